// A newcomer's first visit, in a real browser: accept the invitation, set a password, enrol
// TOTP from the page (reading the secret the way a person would type it), log in, see the
// account page. Screenshots of every step go to OUT_DIR (kept as test artifacts).
//
// Environment: ACCEPT_URL, ORG, EMAIL, PASSWORD, OUT_DIR, CHROMIUM (default /usr/bin/chromium).
import { chromium } from 'playwright-core';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const [acceptUrl, org, email, password, outDir] = ['ACCEPT_URL', 'ORG', 'EMAIL', 'PASSWORD', 'OUT_DIR'].map(env);
fs.mkdirSync(outDir, { recursive: true });

// RFC 6238 (SHA-1, 6 digits, 30 s) from a base32 secret.
function totp(secret, unixSeconds) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of secret.replace(/\s/g, '').toUpperCase()) {
    const i = alphabet.indexOf(c);
    if (i < 0) throw new Error(`not base32: ${c}`);
    bits += i.toString(2).padStart(5, '0');
  }
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(unixSeconds / 30)));
  const h = crypto.createHmac('sha1', key).update(counter).digest();
  const o = h[h.length - 1] & 0xf;
  const n = ((h[o] & 0x7f) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3];
  return String(n % 1_000_000).padStart(6, '0');
}

async function expectHeading(page, text) {
  const h = (await page.locator('h1').textContent()) ?? '';
  if (h.trim() !== text) {
    await page.screenshot({ path: path.join(outDir, 'unexpected.png'), fullPage: true });
    throw new Error(`expected the page "${text}", got "${h.trim()}": ${(await page.locator('main').innerText()).slice(0, 400)}`);
  }
}

// Every visible form control has a label a screen reader announces.
async function checkLabels(page) {
  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll('input:not([type=hidden]), button')]
      .filter((el) => el.tagName === 'BUTTON' ? !el.textContent.trim() : !(el.labels && el.labels.length))
      .map((el) => el.outerHTML),
  );
  if (unlabelled.length) throw new Error(`unlabelled controls: ${unlabelled.join(' ')}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 900, height: 1000 } });
  const page = await context.newPage();
  const shot = (name) => page.screenshot({ path: path.join(outDir, `${name}.png`), fullPage: true });

  await page.goto(acceptUrl);
  await expectHeading(page, 'Accept invitation');
  await checkLabels(page);
  await shot('1-accept');
  await page.getByLabel('New password').fill(password);
  await page.getByLabel('Repeat the password').fill(password);
  await page.getByRole('button', { name: 'Set password' }).click();

  await expectHeading(page, 'Set up two-factor authentication');
  await checkLabels(page);
  const qr = page.getByAltText(/QR code/);
  const qrWidth = await qr.evaluate((img) => img.naturalWidth);
  if (!(qrWidth > 0)) throw new Error('the QR code image did not render');
  const secret = (await page.locator('#secret').textContent()).replace(/\s/g, '');
  await shot('2-enrol');
  const enrolAt = Date.now() / 1000;
  await page.getByLabel('Authentication code').fill(totp(secret, enrolAt));
  await page.getByRole('button', { name: 'Confirm' }).click();

  await expectHeading(page, 'Log in');
  if (!(await page.getByText('Two-factor authentication is on').isVisible())) throw new Error('no enrolment confirmation');
  await checkLabels(page);
  if ((await page.getByLabel('Organization').inputValue()) !== org) throw new Error('organization not prefilled');
  await page.getByLabel('Password').fill(password);
  // The enrolment's code is spent: the next one (the server accepts one step ahead).
  await page.getByLabel('Authentication code').fill(totp(secret, enrolAt + 30));
  await shot('3-login');
  await page.getByRole('button', { name: 'Log in' }).click();

  await expectHeading(page, 'Account');
  const table = await page.locator('table').innerText();
  if (!table.includes(org) || !table.includes('Enrolled')) throw new Error(`account page lacks the organization or MFA state: ${table}`);
  if (!(await page.getByText(email).first().isVisible())) throw new Error('account page does not name the member');
  await shot('4-account');
  console.log(JSON.stringify({ ok: true, screenshots: fs.readdirSync(outDir) }));
} finally {
  await browser.close();
}
