{{/* The labels of one program's objects and pods: the same as config/default's. */}}
{{- define "barelb.labels" -}}
app.kubernetes.io/name: barelb
app.kubernetes.io/component: {{ . }}
{{- end }}

{{/* image: REPOSITORY:TAG of a program's values. */}}
{{- define "barelb.image" -}}
{{ .repository }}:{{ .tag }}
{{- end }}

{{/* The memberlist key Secret's name: none when memberlist is off or unencrypted. */}}
{{- define "barelb.memberlistSecret" -}}
{{- if .Values.memberlist.enabled }}{{ .Values.memberlist.secretName }}{{ end -}}
{{- end }}
