{{- define "sgw.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sgw.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "sgw.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The policy files, name -> content: the chart's example, then policies.files over it. */}}
{{- define "sgw.policyFiles" -}}
{{- $files := dict -}}
{{- range $path, $content := .Files.Glob "files/{catalog,groups}.yaml" -}}
{{- $_ := set $files (trimPrefix "files/" $path) (toString $content) -}}
{{- end -}}
{{- range $path, $content := .Files.Glob "files/tenants/*.yaml" -}}
{{- $_ := set $files (trimPrefix "files/" $path) (toString $content) -}}
{{- end -}}
{{- range $name, $content := .Values.policies.files -}}
{{- $_ := set $files $name $content -}}
{{- end -}}
{{- toYaml $files -}}
{{- end -}}

{{/* A ConfigMap key for a policy file: ConfigMap keys hold no "/". */}}
{{- define "sgw.policyKey" -}}
{{- . | replace "/" "__" -}}
{{- end -}}

{{- define "sgw.catalog" -}}
{{- $files := include "sgw.policyFiles" . | fromYaml -}}
{{- toYaml (index $files "catalog.yaml" | fromYaml) -}}
{{- end -}}

{{/* host, port and scheme of a URL; the port defaults by scheme */}}
{{- define "sgw.endpoint" -}}
{{- $u := urlParse . -}}
{{- $host := regexReplaceAll ":[0-9]+$" $u.host "" -}}
{{- $port := regexFind "[0-9]+$" (regexFind ":[0-9]+$" $u.host) -}}
{{- if not $port -}}{{- $port = ternary "443" "80" (eq $u.scheme "https") -}}{{- end -}}
{{- dict "host" $host "port" (atoi $port) "scheme" $u.scheme | toYaml -}}
{{- end -}}

{{- define "sgw.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "sgw.secretName" -}}
{{- printf "%s-secrets" (include "sgw.fullname" .) -}}
{{- end -}}
