{{/*
Helpers shared by the templates. Object names are fixed (ovnvnet-operator, ovnvnet-agent,
ovnvnet-config, the webhook configuration ovnvnet.io...): the code and the RBAC name them, and
the cluster-scoped ones allow one release per cluster.
*/}}

{{/* The labels every object carries (as the kustomize base always had). */}}
{{- define "ovnvnet.partOf" -}}
app.kubernetes.io/part-of: ovnvnet
{{- end }}

{{/* image: repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "ovnvnet.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The NB remote list, "," joined (RAFT members). */}}
{{- define "ovnvnet.nbDb" -}}
{{ join "," .Values.ovn.nbRemotes }}
{{- end }}

{{/* Where NetworkAttachmentDefinitions are published: "" (none), or a namespace. */}}
{{- define "ovnvnet.nadNamespace" -}}
{{- $ns := .Values.operator.nadNamespace | default .Release.Namespace -}}
{{- if ne $ns "none" }}{{ $ns }}{{ end -}}
{{- end }}

{{/* Settings that refuse to render, with a message naming the value. */}}
{{- define "ovnvnet.validate" -}}
{{- if and (gt (int .Values.operator.replicas) 1) (not .Values.operator.leaderElection) -}}
{{- fail (printf "operator.replicas=%d needs operator.leaderElection=true: without a Lease every replica would act" (int .Values.operator.replicas)) -}}
{{- end -}}
{{- if and .Values.webhook.enabled (eq .Values.webhook.certificate.source "secret") (not .Values.webhook.certificate.secretName) -}}
{{- fail "webhook.certificate.source=secret needs webhook.certificate.secretName (a kubernetes.io/tls Secret)" -}}
{{- end -}}
{{- $tls := list .Values.ovn.tls.keyFile .Values.ovn.tls.certFile .Values.ovn.tls.caFile -}}
{{- if and (has "" $tls) (not (eq (join "" $tls) "")) -}}
{{- fail "ovn.tls.keyFile, certFile and caFile go together: give all three (ssl: remotes) or none" -}}
{{- end -}}
{{- range .Values.ovn.nbRemotes -}}
{{- if and (hasPrefix "ssl:" .) (not $.Values.ovn.tls.keyFile) -}}
{{- fail (printf "ovn.nbRemotes has %s: an ssl: remote needs ovn.tls.keyFile, certFile and caFile" .) -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/* The pod template annotation that rolls a workload when its configuration changes. */}}
{{- define "ovnvnet.configChecksum" -}}
{{- if .Values.rollOnConfigChange }}
      annotations:
        checksum/config: {{ include (print .Template.BasePath "/config.yaml") . | sha256sum }}
{{- end }}
{{- end }}
