//go:build tools

// Package tools pins the Helm CLI that tests/helm/build.sh compiles: the chart is linted,
// rendered and installed by the real helm, built from source like the control plane.
package tools

import _ "helm.sh/helm/v4/cmd/helm"
