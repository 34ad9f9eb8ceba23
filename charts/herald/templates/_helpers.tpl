{{/* Names, labels and the pieces every Herald pod shares. */}}

{{- define "herald.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Object name prefix: <release>-herald, or the release name alone when it already says herald. */}}
{{- define "herald.fullname" -}}
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

{{- define "herald.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select one component's pods. Call with (dict "root" $ "component" "registry"). */}}
{{- define "herald.selectorLabels" -}}
app.kubernetes.io/name: {{ include "herald.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Standard labels of every object. Call with (dict "root" $ "component" "registry"). */}}
{{- define "herald.labels" -}}
{{ include "herald.selectorLabels" . }}
app.kubernetes.io/version: {{ include "herald.version" .root | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: herald
helm.sh/chart: {{ include "herald.chart" .root }}
{{- end -}}

{{- define "herald.version" -}}
{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- end -}}

{{- define "herald.image" -}}
{{- printf "%s:%s" .Values.image.repository (include "herald.version" .) -}}
{{- end -}}

{{/* Service name of a component, e.g. <fullname>-registry. Call with (dict "root" $ "component" "registry"). */}}
{{- define "herald.componentName" -}}
{{- printf "%s-%s" (include "herald.fullname" .root | trunc 52 | trimSuffix "-") .component -}}
{{- end -}}

{{/* The gRPC port of each service: fixed, the services' documented defaults. */}}
{{- define "herald.grpcPort" -}}
{{- get (dict "registry" "50051" "topic" "50052" "dispatcher" "50053") . -}}
{{- end -}}

{{- define "herald.authSecretName" -}}
{{- .Values.auth.existingSecret | default (printf "%s-auth" (include "herald.fullname" .)) -}}
{{- end -}}

{{- define "herald.mongoSecretName" -}}
{{- .Values.mongodb.existingSecret | default (printf "%s-mongodb" (include "herald.fullname" .)) -}}
{{- end -}}

{{- define "herald.mongoSecretKey" -}}
{{- if .Values.mongodb.existingSecret -}}{{ .Values.mongodb.existingSecretKey }}{{- else -}}url{{- end -}}
{{- end -}}

{{/* An env entry read from the auth Secret. Call with (list $ "HERALD_ADMIN_KEY" "admin-key"). */}}
{{- define "herald.authEnv" -}}
{{- $root := index . 0 -}}
- name: {{ index . 1 }}
  valueFrom:
    secretKeyRef:
      name: {{ include "herald.authSecretName" $root }}
      key: {{ index . 2 }}
{{- end -}}

{{/*
Environment every component reads: log level and tracing. The pod's name, namespace and node
(downward API) and Herald's version go into OTEL_RESOURCE_ATTRIBUTES, which the processes' resource
detection reads (packages/platform/src/trace.tracing.ts): every span says which pod sent it.
Kubernetes expands the $(VAR) references to the variables defined before it.
*/}}
{{- define "herald.commonEnv" -}}
- name: HERALD_K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: HERALD_K8S_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: HERALD_K8S_NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: HERALD_VERSION
  value: {{ include "herald.version" . | quote }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: "k8s.pod.name=$(HERALD_K8S_POD_NAME),k8s.namespace.name=$(HERALD_K8S_NAMESPACE),k8s.node.name=$(HERALD_K8S_NODE_NAME),service.version=$(HERALD_VERSION)"
- name: HERALD_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: HERALD_TRACE_SAMPLE_RATIO
  value: {{ .Values.tracing.sampleRatio | quote }}
{{- if .Values.tracing.enabled }}
- name: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
  value: {{ required "tracing.otlpEndpoint is required when tracing.enabled is true" .Values.tracing.otlpEndpoint | quote }}
{{- end }}
{{- end -}}

{{- define "herald.kafkaEnv" -}}
- name: HERALD_KAFKA_BROKERS
  value: {{ join "," .Values.kafka.brokers | quote }}
- name: HERALD_KAFKA_NAMESPACE
  value: {{ .Values.kafka.namespace | quote }}
{{- end -}}

{{/*
The senders' extra environment as the operator's HERALD_SENDER_EXTRA_ENV JSON: sender.extraEnv,
plus the Web Push allow-list for every provider when one is set (a value in sender.extraEnv wins).
Every key is written, empty or not: the operator's parser (a zod record keyed by an enum, in
operator/src/operator.config.ts) refuses JSON that leaves one out.
*/}}
{{- define "herald.senderExtraEnv" -}}
{{- $extra := deepCopy .Values.sender.extraEnv -}}
{{- range list "*" "apns" "fcm" "hms" "webpush" -}}
{{- $_ := set $extra . (get $extra . | default dict) -}}
{{- end -}}
{{- with .Values.webpush.allowedHosts -}}
{{- $all := merge (deepCopy (get $extra "*")) (dict "HERALD_WEBPUSH_ALLOWED_HOSTS" (join "," .)) -}}
{{- $_ := set $extra "*" $all -}}
{{- end -}}
{{- toJson $extra -}}
{{- end -}}

{{/*
Pod spec fields every Herald pod shares: pull secrets, security context, scheduling. A topology
spread constraint without a labelSelector gets the component's selector labels, which values
cannot spell (they hold the release name). Call with (dict "root" $ "component" "registry" "values" .Values.registry).
*/}}
{{- define "herald.podCommon" -}}
{{- $root := .root -}}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.topologySpreadConstraints }}
{{- $selector := dict "matchLabels" (include "herald.selectorLabels" $ | fromYaml) }}
topologySpreadConstraints:
  {{- range . }}
  - {{ toYaml (merge (deepCopy .) (dict "labelSelector" $selector)) | indent 4 | trim }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* The /tmp emptyDir: the only writable path (tsx caches compiled files there). */}}
{{- define "herald.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{- define "herald.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end -}}

{{/* Pod annotations: the Secrets' checksum (a changed key or URL rolls the pods) and the component's own. */}}
{{- define "herald.podAnnotations" -}}
checksum/secrets: {{ include (print .root.Template.BasePath "/secrets.yaml") .root | sha256sum }}
{{- with .values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* A PodDisruptionBudget keeping one pod, when there is more than one to keep. Call like herald.podCommon. */}}
{{- define "herald.pdb" -}}
{{- if and .values.pdb.enabled (gt (int .values.replicas) 1) }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "herald.componentName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "herald.labels" . | nindent 4 }}
spec:
  minAvailable: 1
  selector:
    matchLabels:
      {{- include "herald.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}
