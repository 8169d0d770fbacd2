{{/* Names ------------------------------------------------------------------------------------ */}}
{{- define "cascade.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cascade.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "cascade.component" (dict "root" $ "component" "nessie") -> <fullname>-nessie */}}
{{- define "cascade.component" -}}
{{- printf "%s-%s" (include "cascade.fullname" .root | trunc 40 | trimSuffix "-") .component -}}
{{- end -}}

{{/* Labels ----------------------------------------------------------------------------------- */}}
{{- define "cascade.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "cascade.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cascade
{{- end -}}

{{/* "cascade.componentLabels" (dict "root" $ "component" "nessie") */}}
{{- define "cascade.componentLabels" -}}
{{ include "cascade.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "cascade.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cascade.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "cascade.podMetadata" -}}
labels:
  {{- include "cascade.selectorLabels" . | nindent 2 }}
  {{- with .root.Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with .root.Values.podAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "cascade.image" -}}
{{- printf "%s:%s" .repository (toString .tag) -}}
{{- end -}}

{{/* Secrets ---------------------------------------------------------------------------------- */}}
{{- define "cascade.secretName" -}}
{{- default (include "cascade.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* "cascade.secretEnv" (dict "root" $ "name" "ENV_NAME" "key" "SECRET_KEY") */}}
{{- define "cascade.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "cascade.secretName" .root }}
      key: {{ default .name .key }}
{{- end -}}

{{/* Endpoints -------------------------------------------------------------------------------- */}}
{{- define "cascade.postgresHost" -}}
{{- if .Values.postgresql.bundled -}}
{{- include "cascade.component" (dict "root" . "component" "postgresql") -}}
{{- else -}}
{{- required "postgresql.host is required when postgresql.bundled is false" .Values.postgresql.host -}}
{{- end -}}
{{- end -}}

{{- define "cascade.postgresPort" -}}
{{- if .Values.postgresql.bundled -}}5432{{- else -}}{{ .Values.postgresql.port }}{{- end -}}
{{- end -}}

{{- define "cascade.s3Endpoint" -}}
{{- if .Values.objectStorage.bundled -}}
{{- printf "http://%s:9000" (include "cascade.component" (dict "root" . "component" "minio")) -}}
{{- else -}}
{{- required "objectStorage.endpoint is required when objectStorage.bundled is false" .Values.objectStorage.endpoint -}}
{{- end -}}
{{- end -}}

{{- define "cascade.nessieUri" -}}
{{- printf "http://%s:%v" (include "cascade.component" (dict "root" . "component" "nessie")) .Values.nessie.service.port -}}
{{- end -}}

{{/* The variables deploy/config's files read (see docs/STACK.md, "Shared configuration"). */}}
{{- define "cascade.s3Env" -}}
- name: S3_ENDPOINT
  value: {{ include "cascade.s3Endpoint" . | quote }}
- name: S3_REGION
  value: {{ .Values.objectStorage.region | quote }}
{{ include "cascade.secretEnv" (dict "root" . "name" "S3_ACCESS_KEY_ID") }}
{{ include "cascade.secretEnv" (dict "root" . "name" "S3_SECRET_ACCESS_KEY") }}
{{- end -}}

{{- define "cascade.trinoEnv" -}}
- name: NESSIE_URI
  value: {{ include "cascade.nessieUri" . | quote }}
- name: POSTGRES_HOST
  value: {{ include "cascade.postgresHost" . | quote }}
- name: POSTGRES_PORT
  value: {{ include "cascade.postgresPort" . | quote }}
{{ include "cascade.secretEnv" (dict "root" . "name" "MARTS_DB_PASSWORD") }}
{{ include "cascade.s3Env" . }}
{{- end -}}
