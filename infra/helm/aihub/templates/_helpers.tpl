{{- define "aihub.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "aihub.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "aihub.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "aihub.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "aihub.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "aihub.fullname" .)) -}}
{{- end -}}

{{- define "aihub.databaseSecret" -}}
{{- .Values.database.existingSecret | default (printf "%s-secrets" (include "aihub.fullname" .)) -}}
{{- end -}}

{{/* The environment of every AI Hub container. */}}
{{- define "aihub.env" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef: {name: {{ include "aihub.databaseSecret" . }}, key: DATABASE_URL}
{{- range $key := list "AIHUB_ADMIN_TOKENS" "OPENROUTER_API_KEY" "GEMINI_API_KEY" "OPENAI_API_KEY" "AIHUB_PAYMENT_WEBHOOK_SECRET" "AIHUB_PERSONAL_DATA_SECRET" "AIHUB_AUDIT_SIGNING_KEY" "KAFKA_SASL_PASSWORD" }}
- name: {{ $key }}
  valueFrom:
    secretKeyRef: {name: {{ include "aihub.secretName" $ }}, key: {{ $key }}, optional: true}
{{- end }}
{{- if .Values.database.caSecret }}
- name: AIHUB_DATABASE_CA_FILE
  value: /etc/aihub/database-ca/ca.crt
{{- end }}
{{- if .Values.kafka.caSecret }}
- name: KAFKA_SSL_CA_FILE
  value: /etc/aihub/kafka-ca/ca.crt
{{- end }}
{{- end -}}

{{/* Volumes every AI Hub pod mounts: /tmp, and the CA files when configured. */}}
{{- define "aihub.volumes" -}}
- name: tmp
  emptyDir: {}
{{- if .Values.database.caSecret }}
- name: database-ca
  secret: {secretName: {{ .Values.database.caSecret }}}
{{- end }}
{{- if .Values.kafka.caSecret }}
- name: kafka-ca
  secret: {secretName: {{ .Values.kafka.caSecret }}}
{{- end }}
{{- end -}}

{{- define "aihub.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.database.caSecret }}
- name: database-ca
  mountPath: /etc/aihub/database-ca
  readOnly: true
{{- end }}
{{- if .Values.kafka.caSecret }}
- name: kafka-ca
  mountPath: /etc/aihub/kafka-ca
  readOnly: true
{{- end }}
{{- end -}}
