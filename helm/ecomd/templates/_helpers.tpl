{{/* Names, labels and the role list shared by every template. */}}

{{- define "ecomd.allRoles" -}}
order inventory payment notification saga
{{- end -}}

{{- define "ecomd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-wide name, at most 38 characters: role objects append "-<role>" and a StatefulSet name
     may have 52 at most (its pods get a controller-revision-hash label). */}}
{{- define "ecomd.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 38 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 38 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 38 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The roles this release deploys, as a JSON list: `role` alone, or every enabled `roles.<r>`. */}}
{{- define "ecomd.roles" -}}
{{- $all := splitList " " (include "ecomd.allRoles" .) -}}
{{- $out := list -}}
{{- if .Values.role -}}
{{- if not (has .Values.role $all) -}}
{{- fail (printf "role %q is not one of: %s" .Values.role (join ", " $all)) -}}
{{- end -}}
{{- $out = list .Values.role -}}
{{- else -}}
{{- range $r := $all -}}
{{- $rv := get ($.Values.roles | default dict) $r | default dict -}}
{{- if $rv.enabled -}}
{{- $out = append $out $r -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* Settings of one role: (dict "root" $ "role" "order") -> YAML of roles.<role>. */}}
{{- define "ecomd.roleValues" -}}
{{- $rv := get (.root.Values.roles | default dict) .role | default dict -}}
{{- toYaml $rv -}}
{{- end -}}

{{- define "ecomd.roleFullname" -}}
{{- printf "%s-%s" (include "ecomd.fullname" .root) .role -}}
{{- end -}}

{{/* app.kubernetes.io/version: the image tag, made a valid label value. */}}
{{- define "ecomd.version" -}}
{{- $v := .Values.image.tag | default .Chart.AppVersion | toString -}}
{{- regexReplaceAll "[^A-Za-z0-9_.-]" $v "_" | trunc 63 | trimSuffix "-" | trimSuffix "_" | trimSuffix "." -}}
{{- end -}}

{{- define "ecomd.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion | toString -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object; pass (dict "root" $ "role" ROLE) — role may be "". */}}
{{- define "ecomd.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ecomd.selectorLabels" . }}
app.kubernetes.io/version: {{ include "ecomd.version" .root | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: ecomd
{{- end -}}

{{- define "ecomd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ecomd.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .role }}
app.kubernetes.io/component: {{ .role }}
{{- end }}
{{- end -}}

{{- define "ecomd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ecomd.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Where the chart's config file is mounted (not over /etc/ecomd, which holds the image's). */}}
{{- define "ecomd.configDir" -}}/etc/ecomd/helm{{- end -}}
{{- define "ecomd.configFile" -}}{{ include "ecomd.configDir" . }}/ecomd.json{{- end -}}
{{- define "ecomd.dataDir" -}}/var/lib/ecomd{{- end -}}
{{- define "ecomd.kafkaCaDir" -}}/etc/ecomd/kafka-ca{{- end -}}
{{- define "ecomd.kafkaClientDir" -}}/etc/ecomd/kafka-client{{- end -}}

{{/* Name of the Secret the chart makes for kafka.sasl.password. */}}
{{- define "ecomd.kafkaSecretName" -}}
{{- printf "%s-kafka" (include "ecomd.fullname" .) -}}
{{- end -}}

{{- define "ecomd.saslEnabled" -}}
{{- if hasPrefix "sasl_" (lower .Values.kafka.securityProtocol) -}}true{{- end -}}
{{- end -}}

{{/* Fails early on Kafka settings that cannot work. */}}
{{- define "ecomd.validateKafka" -}}
{{- $k := .Values.kafka -}}
{{- if include "ecomd.saslEnabled" . -}}
{{- if and $k.sasl.password $k.sasl.existingSecret -}}
{{- fail "kafka.sasl: set either password or existingSecret, not both" -}}
{{- end -}}
{{- if not (or $k.sasl.password $k.sasl.existingSecret) -}}
{{- fail (printf "kafka.securityProtocol=%s needs kafka.sasl.existingSecret (or kafka.sasl.password)" $k.securityProtocol) -}}
{{- end -}}
{{- if not (or $k.sasl.username (and $k.sasl.existingSecret $k.sasl.usernameKey)) -}}
{{- fail "kafka.sasl: set username, or existingSecret with usernameKey" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Fails on notification secrets that would land in the ConfigMap, or a Secret without keys. */}}
{{- define "ecomd.validateNotification" -}}
{{- $n := (.Values.config | default dict).notification | default dict -}}
{{- if hasKey ($n.webhook | default dict) "secret" -}}
{{- fail "config.notification.webhook.secret would be rendered into the ConfigMap: put it in a Secret and name it in notificationSecrets" -}}
{{- end -}}
{{- if hasKey ($n.smtp | default dict) "password" -}}
{{- fail "config.notification.smtp.password would be rendered into the ConfigMap: put it in a Secret and name it in notificationSecrets" -}}
{{- end -}}
{{- $s := .Values.notificationSecrets -}}
{{- if and $s.existingSecret (not (or $s.webhookSecretKey $s.smtpPasswordKey)) -}}
{{- fail "notificationSecrets.existingSecret needs webhookSecretKey and/or smtpPasswordKey" -}}
{{- end -}}
{{- if and (not $s.existingSecret) (or $s.webhookSecretKey $s.smtpPasswordKey) -}}
{{- fail "notificationSecrets: a key is set but existingSecret is empty" -}}
{{- end -}}
{{- end -}}

{{/* Env vars of the notification role that carry the sinks' secrets. */}}
{{- define "ecomd.notificationSecretEnv" -}}
{{- $s := .Values.notificationSecrets -}}
{{- if and $s.existingSecret $s.webhookSecretKey }}
- name: ECOMD_WEBHOOK_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $s.existingSecret }}
      key: {{ $s.webhookSecretKey }}
{{- end }}
{{- if and $s.existingSecret $s.smtpPasswordKey }}
- name: ECOMD_SMTP_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $s.existingSecret }}
      key: {{ $s.smtpPasswordKey }}
{{- end }}
{{- end -}}

{{/* The chart-managed part of ecomd.json, deep-merged over `config`. */}}
{{- define "ecomd.configJson" -}}
{{- include "ecomd.validateKafka" . -}}
{{- include "ecomd.validateNotification" . -}}
{{- $k := .Values.kafka -}}
{{- $props := dict "security.protocol" (lower $k.securityProtocol) -}}
{{- if include "ecomd.saslEnabled" . -}}
{{- $_ := set $props "sasl.mechanism" $k.sasl.mechanism -}}
{{- if and $k.sasl.username (not (and $k.sasl.existingSecret $k.sasl.usernameKey)) -}}
{{- $_ := set $props "sasl.username" $k.sasl.username -}}
{{- end -}}
{{- end -}}
{{- if $k.tls.caSecret -}}
{{- $_ := set $props "ssl.ca.location" (printf "%s/%s" (include "ecomd.kafkaCaDir" .) $k.tls.caKey) -}}
{{- end -}}
{{- if $k.tls.clientSecret -}}
{{- $_ := set $props "ssl.certificate.location" (printf "%s/%s" (include "ecomd.kafkaClientDir" .) $k.tls.certKey) -}}
{{- $_ := set $props "ssl.key.location" (printf "%s/%s" (include "ecomd.kafkaClientDir" .) $k.tls.keyKey) -}}
{{- end -}}
{{- $props = mergeOverwrite $props ($k.properties | default dict) -}}
{{- $kafka := dict "bootstrap_servers" $k.bootstrapServers "properties" $props -}}
{{- /* Topics not named under config.topics.topics get these defaults (ecomd topics create). */ -}}
{{- $topics := dict "defaults" (dict "partitions" $k.partitions "replication_factor" $k.replicationFactor) -}}
{{- $managed := dict "data_dir" (include "ecomd.dataDir" .) "http" (printf "0.0.0.0:%v" .Values.service.port) "bus" "kafka" "log_level" .Values.logLevel "log_format" .Values.logFormat "kafka" $kafka "topics" $topics -}}
{{- $cfg := mergeOverwrite (deepCopy (.Values.config | default dict)) $managed -}}
{{- toPrettyJson $cfg -}}
{{- end -}}

{{/* Env vars that carry Kafka secrets (ECOMD_KAFKA_PROP_<NAME>, dots as underscores). */}}
{{- define "ecomd.kafkaSecretEnv" -}}
{{- $root := .root -}}
{{- $k := $root.Values.kafka -}}
{{- if include "ecomd.saslEnabled" $root }}
{{- $secret := $k.sasl.existingSecret | default .chartSecret }}
- name: ECOMD_KAFKA_PROP_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ ternary $k.sasl.passwordKey "password" (not (empty $k.sasl.existingSecret)) }}
{{- if and $k.sasl.existingSecret $k.sasl.usernameKey }}
- name: ECOMD_KAFKA_PROP_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $k.sasl.existingSecret }}
      key: {{ $k.sasl.usernameKey }}
{{- end }}
{{- end }}
{{- range $k.secretProperties }}
- name: {{ printf "ECOMD_KAFKA_PROP_%s" (.property | upper | replace "." "_") }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .key }}
{{- end }}
{{- end -}}

{{/* Volumes for the config file and Kafka TLS material; pass (dict "root" $ "configMap" NAME). */}}
{{- define "ecomd.configVolumes" -}}
- name: config
  configMap:
    name: {{ .configMap }}
{{- with .root.Values.kafka.tls.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ . }}
{{- end }}
{{- with .root.Values.kafka.tls.clientSecret }}
- name: kafka-client
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
- name: tmp
  emptyDir: {}
{{- end -}}

{{- define "ecomd.configVolumeMounts" -}}
- name: config
  mountPath: {{ include "ecomd.configDir" .root }}
  readOnly: true
{{- if .root.Values.kafka.tls.caSecret }}
- name: kafka-ca
  mountPath: {{ include "ecomd.kafkaCaDir" .root }}
  readOnly: true
{{- end }}
{{- if .root.Values.kafka.tls.clientSecret }}
- name: kafka-client
  mountPath: {{ include "ecomd.kafkaClientDir" .root }}
  readOnly: true
{{- end }}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{- define "ecomd.storeSecretName" -}}
{{- printf "%s-store" (include "ecomd.fullname" .) -}}
{{- end -}}

{{/* The store of every role: nothing for SQLite (the default); PostgreSQL's URL and password
     from a Secret, never the ConfigMap. */}}
{{- define "ecomd.storeEnv" -}}
{{- $s := .Values.store -}}
{{- if eq $s.type "postgres" }}
{{- $secret := $s.existingSecret | default (include "ecomd.storeSecretName" .) }}
- name: ECOMD_STORE
  value: postgres
- name: ECOMD_STORE_SCHEMA_PREFIX
  value: {{ $s.schemaPrefix | quote }}
- name: ECOMD_STORE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ ternary $s.urlKey "url" (not (empty $s.existingSecret)) }}
{{- if or $s.existingSecret $s.password }}
- name: ECOMD_STORE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ ternary $s.passwordKey "password" (not (empty $s.existingSecret)) }}
      {{- if $s.existingSecret }}
      optional: true
      {{- end }}
{{- end }}
{{- end }}
{{- end -}}
