{{/* Names, labels, images and the rendered MeshGate config. */}}

{{- define "meshgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "meshgate.fullname" -}}
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

{{- define "meshgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "meshgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "meshgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "meshgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ .Values.mode }}
{{- end -}}

{{- define "meshgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "meshgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* image: repository:tag, or repository@digest when a digest is set. Args: (list image defaultTag) */}}
{{- define "meshgate.image" -}}
{{- $img := index . 0 -}}
{{- $tag := default (index . 1) $img.tag -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Whether the pod gets the Istio sidecar. */}}
{{- define "meshgate.inject" -}}
{{- if kindIs "invalid" .Values.istio.inject -}}
{{- if eq .Values.mode "sidecar" }}true{{ else }}false{{ end -}}
{{- else -}}
{{- .Values.istio.inject -}}
{{- end -}}
{{- end -}}

{{- define "meshgate.validate" -}}
{{- if not (has .Values.mode (list "sidecar" "bridge")) -}}
{{- fail (printf "mode: must be sidecar or bridge, got %q" .Values.mode) -}}
{{- end -}}
{{- $d := .Values.drain -}}
{{- if le (int $d.terminationGracePeriodSeconds) (add (int $d.preStopSeconds) (int $d.timeoutSeconds) | int) -}}
{{- fail (printf "drain.terminationGracePeriodSeconds: %v must exceed drain.preStopSeconds + drain.timeoutSeconds (%v)" $d.terminationGracePeriodSeconds (add $d.preStopSeconds $d.timeoutSeconds)) -}}
{{- end -}}
{{- if and (eq .Values.mode "bridge") (not .Values.config.xds) -}}
{{- fail "config.xds: required in bridge mode (MeshGate's xDS server configures the bridge's Envoy)" -}}
{{- end -}}
{{- end -}}

{{/* The MeshGate config with the chart-owned fields set. */}}
{{- define "meshgate.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $admin := default dict (get $cfg "admin") -}}
{{- $_ := set $admin "health_address" (printf "0.0.0.0:%d" (int .Values.ports.health)) -}}
{{- $_ := set $cfg "admin" $admin -}}
{{- $defaults := default dict (get $cfg "defaults") -}}
{{- $_ := set $defaults "drain_timeout" (printf "%ds" (int .Values.drain.timeoutSeconds)) -}}
{{- $_ := set $cfg "defaults" $defaults -}}
{{- toYaml $cfg -}}
{{- end -}}
