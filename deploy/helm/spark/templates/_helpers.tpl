{{/*
Shared names, labels and pod-spec fragments of the Spark chart. Service blocks of values.yaml are always
bound to a variable named $svc (the learner template: $learner) so the chart test can check every
`$svc.<path>` against every service block.
*/}}

{{- define "spark.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "spark.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The Spark services: values key → directory under services/ and whether it serves gRPC. */}}
{{- define "spark.services" -}}
coordinator: {dir: coordinator, grpc: true}
rollout: {dir: rollout, grpc: false}
verifier: {dir: verifier, grpc: false}
rewardSynthesis: {dir: reward-synthesis, grpc: false}
learner: {dir: learner, grpc: true}
{{- end }}

{{/*
Config the chart decides per service (camelCase config keys, rendered like each service's `config` map,
which overrides them): where checkpoints go (the learner's volume; the coordinator names each job's
directory under it) and the PolicyService address the learner advertises to rollout workers.
*/}}
{{- define "spark.serviceDefaults" -}}
coordinator:
  dataDir: {{ printf "%s/jobs" .Values.learner.persistence.mountPath | quote }}
rollout: {}
verifier: {}
rewardSynthesis: {}
learner:
  dataDir: {{ .Values.learner.persistence.mountPath | quote }}
  advertiseAddress: {{ printf "%s-learner.%s.svc:%d" (include "spark.fullname" .) .Release.Namespace (int .Values.ports.grpc) | quote }}
{{- end }}

{{- define "spark.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "spark.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: spark
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "learner"). */}}
{{- define "spark.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spark.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "spark.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "spark.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "spark.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "spark.authSecretName" -}}
{{- .Values.auth.existingSecret | default (printf "%s-secrets" (include "spark.fullname" .)) }}
{{- end }}

{{- define "spark.redisSecretName" -}}
{{- if and .Values.redis.existingSecret (not .Values.redis.bundled.enabled) }}
{{- .Values.redis.existingSecret }}
{{- else }}
{{- printf "%s-secrets" (include "spark.fullname" .) }}
{{- end }}
{{- end }}

{{- define "spark.redisSecretKey" -}}
{{- if and .Values.redis.existingSecret (not .Values.redis.bundled.enabled) }}
{{- .Values.redis.existingSecretKey }}
{{- else }}
{{- "redis-url" }}
{{- end }}
{{- end }}

{{- define "spark.authSecretKey" -}}
{{- if .Values.auth.existingSecret }}
{{- .Values.auth.existingSecretKey }}
{{- else }}
{{- "auth-token" }}
{{- end }}
{{- end }}

{{- define "spark.hasAuthToken" -}}
{{- if or .Values.auth.token .Values.auth.existingSecret }}true{{ end }}
{{- end }}

{{/*
The container of one service: (dict "root" $ "key" "rollout" "dir" "rollout" "grpc" false "svc" $svc).
Config comes from the shared ConfigMap, the service's own ConfigMap and the Secret.
*/}}
{{- define "spark.container" -}}
{{- $root := .root }}
{{- $svc := .svc }}
- name: {{ .dir }}
  image: {{ include "spark.image" $root }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  # The image's entrypoint is tini; the service is its argument list.
  args: ["node", "--import", "tsx", "services/{{ .dir }}/src/main.ts"]
  envFrom:
    - configMapRef:
        name: {{ include "spark.fullname" $root }}-common
    - configMapRef:
        name: {{ include "spark.fullname" $root }}-{{ .dir }}
  env:
    {{- if include "spark.hasAuthToken" $root }}
    - name: SPARK_AUTH_TOKEN
      valueFrom:
        secretKeyRef:
          name: {{ include "spark.authSecretName" $root }}
          key: {{ include "spark.authSecretKey" $root }}
    {{- end }}
    - name: SPARK_REDIS_URL
      valueFrom:
        secretKeyRef:
          name: {{ include "spark.redisSecretName" $root }}
          key: {{ include "spark.redisSecretKey" $root }}
    {{- with $svc.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    {{- if .grpc }}
    - name: grpc
      containerPort: {{ $root.Values.ports.grpc }}
      protocol: TCP
    {{- end }}
    - name: metrics
      containerPort: {{ $root.Values.ports.metrics }}
      protocol: TCP
  {{- if and .grpc (not $root.Values.tls.enabled) }}
  {{- /* Kubernetes gRPC probes speak plaintext grpc.health.v1 (anonymous on Spark servers). */}}
  startupProbe:
    grpc:
      port: {{ $root.Values.ports.grpc }}
    periodSeconds: 5
    failureThreshold: 60
  readinessProbe:
    grpc:
      port: {{ $root.Values.ports.grpc }}
    periodSeconds: 10
  livenessProbe:
    grpc:
      port: {{ $root.Values.ports.grpc }}
    periodSeconds: 20
    timeoutSeconds: 5
    failureThreshold: 3
  {{- else }}
  {{- /* Workers (and TLS servers, which a kubelet gRPC probe cannot reach) answer /healthz on the metrics port. */}}
  startupProbe:
    httpGet:
      path: /healthz
      port: metrics
    periodSeconds: 5
    failureThreshold: 60
  readinessProbe:
    httpGet:
      path: /healthz
      port: metrics
    periodSeconds: 10
  livenessProbe:
    httpGet:
      path: /healthz
      port: metrics
    periodSeconds: 20
    timeoutSeconds: 5
    failureThreshold: 3
  {{- end }}
  resources:
    {{- $res := deepCopy ($svc.resources | default dict) }}
    {{- if and (eq .key "learner") (gt (int $root.Values.learner.gpu.count) 0) }}
    {{- $_ := set $res "requests" (merge (dict $root.Values.learner.gpu.resourceName $root.Values.learner.gpu.count) ($res.requests | default dict)) }}
    {{- $_ := set $res "limits" (merge (dict $root.Values.learner.gpu.resourceName $root.Values.learner.gpu.count) ($res.limits | default dict)) }}
    {{- end }}
    {{- toYaml $res | nindent 4 }}
  securityContext:
    {{- toYaml $root.Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    {{- if $root.Values.tls.enabled }}
    - name: tls
      mountPath: /etc/spark/tls
      readOnly: true
    {{- end }}
    {{- if eq .key "learner" }}
    - name: checkpoints
      mountPath: {{ $root.Values.learner.persistence.mountPath }}
    {{- end }}
{{- end }}

{{/* Pod-level fields shared by every service: (dict "root" $ "svc" $svc). */}}
{{- define "spark.podSpec" -}}
{{- $root := .root }}
{{- $svc := .svc }}
serviceAccountName: {{ include "spark.serviceAccountName" $root }}
automountServiceAccountToken: false
terminationGracePeriodSeconds: {{ $root.Values.terminationGracePeriodSeconds }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $svc.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $svc.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $svc.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Volumes every pod has: /tmp (tsx's compile cache; the root filesystem is read-only) and TLS files. */}}
{{- define "spark.volumes" -}}
- name: tmp
  emptyDir: {}
{{- if .Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ .Values.tls.secretName }}
{{- end }}
{{- end }}
