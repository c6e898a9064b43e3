{{/* The chart's name. */}}
{{- define "tributary.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: the release name if it contains the chart's name. */}}
{{- define "tributary.fullname" -}}
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

{{- define "tributary.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tributary.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tributary.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "tributary.labels" -}}
helm.sh/chart: {{ include "tributary.chart" . }}
{{ include "tributary.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tributary
{{- end }}

{{- define "tributary.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tributary.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tributary.leaseName" -}}
{{- default (printf "%s-operator" (include "tributary.fullname" .)) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "tributary.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The namespaces to watch, checked: namespace-scoped RBAC needs a list of them.
*/}}
{{- define "tributary.watchNamespaces" -}}
{{- if and (eq .Values.rbac.scope "namespace") (empty .Values.watchNamespaces) }}
{{- fail "rbac.scope=namespace needs watchNamespaces: the namespaces to grant the operator access to (e.g. --set watchNamespaces={team-a,team-b}); use rbac.scope=cluster to watch every namespace" }}
{{- end }}
{{- join "," .Values.watchNamespaces }}
{{- end }}

{{/*
The rules the operator needs on the Tributary resources, on Events and on the objects of
managed Clusters, in every namespace it watches (a ClusterRole, or a Role per watched
namespace).
*/}}
{{- define "tributary.rules" -}}
- apiGroups: ["tributary.dev"]
  resources: ["clusters", "topics", "consumergroups"]
  verbs: ["get", "list", "watch"]
# The Topic finalizer (tributary.dev/topic) is added and removed with a JSON patch.
- apiGroups: ["tributary.dev"]
  resources: ["topics"]
  verbs: ["patch"]
- apiGroups: ["tributary.dev"]
  resources: ["clusters/status", "topics/status", "consumergroups/status"]
  verbs: ["patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# Managed Clusters: the objects that run the brokers, written by server-side apply (a PATCH,
# which also needs `create` when the object does not exist yet). The StatefulSets are
# watched (the controller owns them); the Pods are listed for their readiness. Nothing is
# deleted: the garbage collector removes the objects with their Cluster.
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  # delete: a rolling restart deletes one broker pod at a time (the StatefulSet's update
  # strategy is OnDelete).
  verbs: ["list", "delete"]
{{- end }}
