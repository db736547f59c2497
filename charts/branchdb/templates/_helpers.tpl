{{- define "branchdb.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "branchdb.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "branchdb.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "branchdb.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "branchdb.labels" -}}
app.kubernetes.io/name: {{ include "branchdb.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "branchdb.selectorLabels" -}}
app.kubernetes.io/name: {{ include "branchdb.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "branchdb.secretName" -}}
{{- default (include "branchdb.fullname" .) .Values.existingSecret -}}
{{- end -}}

{{/* The environment variable suffix of a project name (as the daemon reads it). */}}
{{- define "branchdb.envName" -}}
{{- regexReplaceAll "[^A-Za-z0-9]" . "_" | upper -}}
{{- end -}}

{{/* Refuse value sets that cannot work. */}}
{{- define "branchdb.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (ne .Values.state.backend "postgres") -}}
{{- fail "replicaCount > 1 needs state.backend: postgres (replicas share only the PostgreSQL state store)" -}}
{{- end -}}
{{- if and .Values.persistence.enabled (gt (int .Values.replicaCount) 1) -}}
{{- fail "persistence (the libsql file backend) needs replicaCount: 1" -}}
{{- end -}}
{{- if and (eq .Values.state.backend "postgres") (not .Values.existingSecret) (not .Values.state.url) -}}
{{- fail "state.backend: postgres needs state.url (or existingSecret holding BRANCHDB_STATE_URL)" -}}
{{- end -}}
{{- end -}}
