{{/* Names and labels shared by every template. */}}

{{- define "roster.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "roster.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "roster.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "roster.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "roster.selectorLabels" -}}
app.kubernetes.io/name: {{ include "roster.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "roster.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "roster.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: roster
{{- end -}}

{{- define "roster.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "roster.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "roster.webhookService" -}}{{ include "roster.fullname" . }}-webhook{{- end -}}
{{- define "roster.identityService" -}}{{ include "roster.fullname" . }}-identity{{- end -}}
{{- define "roster.authnService" -}}{{ include "roster.fullname" . }}-authn{{- end -}}
{{- define "roster.clientCA" -}}{{ include "roster.fullname" . }}-apiserver-client-ca{{- end -}}

{{- define "roster.servingSecret" -}}
{{- default (printf "%s-serving" (include "roster.fullname" .)) .Values.certificates.secretName -}}
{{- end -}}

{{- define "roster.leaseName" -}}
{{- default (printf "%s-leader" (include "roster.fullname" .)) .Values.leaderElection.leaseName -}}
{{- end -}}

{{/* The ClusterRoles project roles bind: roster must be allowed to bind them (RBAC `bind`). */}}
{{- define "roster.projectRoles" -}}
{{- $r := .Values.members.projectRoles -}}
{{- list $r.admin $r.developer $r.viewer | uniq | toJson -}}
{{- end -}}

{{/* Who members are: roster's own identities when roster logs them in, else the external ones. */}}
{{- define "roster.memberSubjects" -}}
{{- .Values.members.subjects | default (ternary "roster" "external" .Values.identity.enabled) -}}
{{- end -}}
