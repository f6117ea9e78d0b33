{{/* Chart name, overridable with nameOverride. */}}
{{- define "kubefront.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name used as the prefix of every object. Truncated to 63 characters
(DNS-1123 label limit of some fields).
*/}}
{{- define "kubefront.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* chart label value: name-version */}}
{{- define "kubefront.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable across upgrades (a Deployment selector is immutable). */}}
{{- define "kubefront.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubefront.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Standard labels on every object of the chart. */}}
{{- define "kubefront.labels" -}}
helm.sh/chart: {{ include "kubefront.chart" . }}
{{ include "kubefront.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubefront
{{- end }}

{{/* ServiceAccount the operator runs as. */}}
{{- define "kubefront.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kubefront.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository[:tag][@digest] for an image block; tag defaults to appVersion. */}}
{{- define "kubefront.imageRef" -}}
{{- $img := index . 0 }}
{{- $ctx := index . 1 }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository (default $ctx.Chart.AppVersion $img.tag) }}
{{- end }}
{{- end }}

{{/* "true" when leader election is effectively on. */}}
{{- define "kubefront.leaderElection" -}}
{{- if eq (toString .Values.leaderElection) "auto" }}
{{- if gt (int .Values.replicas) 1 }}true{{ else }}false{{ end }}
{{- else }}
{{- .Values.leaderElection | toString }}
{{- end }}
{{- end }}
