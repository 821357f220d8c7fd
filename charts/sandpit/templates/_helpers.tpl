{{/* Names and labels shared by every object of the chart. */}}

{{- define "sandpit.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sandpit.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sandpit.labels" -}}
app.kubernetes.io/name: {{ include "sandpit.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sandpit
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "sandpit.selector" -}}
app.kubernetes.io/name: {{ include "sandpit.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "sandpit.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The operator's image: operator.image.repository (the minimal
sandpit-operator image of `make images`), else the one image above. */}}
{{- define "sandpit.operatorImage" -}}
{{- with .Values.operator.image.repository -}}
{{- printf "%s:%s" . ($.Values.operator.image.tag | default $.Values.image.tag | default $.Chart.AppVersion) -}}
{{- else -}}
{{- include "sandpit.image" . -}}
{{- end -}}
{{- end -}}

{{- define "sandpit.tokenSecret" -}}
{{- .Values.agentToken.existingSecret | default (printf "%s-agent-token" (include "sandpit.fullname" .)) -}}
{{- end -}}

{{- define "sandpit.agentTLSSecret" -}}
{{- .Values.agent.tls.existingSecret | default (printf "%s-agent-tls" (include "sandpit.fullname" .)) -}}
{{- end -}}

{{/* One --pool value: TEMPLATE[:KEY=VALUE,...]=SIZE (docs/agent-api.md, warm pools). */}}
{{- define "sandpit.pool" -}}
{{- $opts := list -}}
{{- range $k := list "cpu" "memory" "disk" "pids" "name" -}}
{{- if hasKey $ $k -}}{{- $opts = append $opts (printf "%s=%v" $k (index $ $k)) -}}{{- end -}}
{{- end -}}
{{- .template -}}{{- if $opts -}}:{{ join "," $opts }}{{- end -}}={{ .size }}
{{- end -}}
