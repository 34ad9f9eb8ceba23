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

{{/*
Pod annotations: a checksum of what the Secrets are made from (a changed key, URL or Secret name
rolls the pods) and the component's own. Only values go in, never the rendered Secrets: a key
left empty is generated by a random render and then kept (lookup), so a checksum of the render
would change on every upgrade and roll every pod for nothing.
*/}}
{{- define "herald.podAnnotations" -}}
checksum/secrets: {{ toJson (dict "auth" .root.Values.auth "mongodb" .root.Values.mongodb) | sha256sum }}
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


{{/* A resource quantity ("100m", "1.5", "512Mi", 2) as a plain number in base units. */}}
{{- define "herald.quantity" -}}
{{- $q := toString . -}}
{{- $suffix := regexFind "[a-zA-Z]+$" $q -}}
{{- $factors := dict "" 1.0 "m" 0.001 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "Pi" 1125899906842624.0 "Ei" 1152921504606846976.0 -}}
{{- mulf (trimSuffix $suffix $q | float64) (get $factors $suffix) -}}
{{- end -}}

{{/*
What values.schema.json cannot say, since it cannot compare two values: checked at every render
(helm template, install, upgrade), each failure naming the values and the fix.
*/}}
{{- define "herald.validate" -}}
{{- with .Values.operator.leaderElection }}
{{- if and .enabled (ge (int .renewSeconds) (int .leaseDurationSeconds)) }}
{{- fail (printf "operator.leaderElection.renewSeconds (%d) must be below operator.leaderElection.leaseDurationSeconds (%d): the Lease would expire before its holder renews it, and two operators would reconcile at once" (int .renewSeconds) (int .leaseDurationSeconds)) }}
{{- end }}
{{- end }}
{{- range $component := list "registry" "topic" "dispatcher" "gateway" "operator" }}
{{- $resources := (index $.Values $component).resources | default dict }}
{{- $limits := $resources.limits | default dict }}
{{- range $resource, $request := $resources.requests | default dict }}
{{- if hasKey $limits $resource }}
{{- $limit := get $limits $resource }}
{{- if gt (include "herald.quantity" $request | float64) (include "herald.quantity" $limit | float64) }}
{{- fail (printf "%s.resources.requests.%s (%v) is above %s.resources.limits.%s (%v): the API server refuses such a pod; lower the request or raise the limit" $component $resource $request $component $resource $limit) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- /*
A watched namespace must exist before the release: the operator's Role and the senders go there,
and a missing one would leave a failed release half applied. lookup answers only with a cluster
(install, upgrade, --dry-run=server); kube-system tells that one is there. The release namespace
itself may still be on its way (--create-namespace).
*/}}
{{- with .Values.operator.watchNamespace }}
{{- if and (ne . $.Release.Namespace) (lookup "v1" "Namespace" "" "kube-system") (not (lookup "v1" "Namespace" "" .)) }}
{{- fail (printf "operator.watchNamespace %q does not exist: create it first (kubectl create namespace %s), or leave watchNamespace empty to watch every namespace" . .) }}
{{- end }}
{{- end }}
{{- end -}}
