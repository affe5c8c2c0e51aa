{{/* Names, labels and values derived from other values. */}}

{{/* The chart name, or nameOverride. */}}
{{- define "vane.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object name: fullnameOverride, else the release name when it already
contains the chart name, else "<release>-<chart>". Truncated to 63 characters (DNS label).
*/}}
{{- define "vane.fullname" -}}
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

{{/* "vane-0.1.0", for the helm.sh/chart label. */}}
{{- define "vane.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "vane.labels" -}}
helm.sh/chart: {{ include "vane.chart" . }}
{{ include "vane.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select this release's objects (immutable in a workload's selector). */}}
{{- define "vane.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vane.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels that select this release's vane pods. */}}
{{- define "vane.podSelectorLabels" -}}
{{ include "vane.selectorLabels" . }}
app.kubernetes.io/component: controller
{{- end }}

{{/* The ServiceAccount vane runs as. */}}
{{- define "vane.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vane.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: repository:tag, or repository@digest when a digest is set. */}}
{{- define "vane.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The namespaces vane watches (`--watch-namespace`), as a JSON list (read it back with
fromJsonArray): controller.watchNamespace is a list, or one name as a string; empty: all.
*/}}
{{- define "vane.watchNamespaces" -}}
{{- $namespaces := .Values.controller.watchNamespace }}
{{- if kindIs "string" $namespaces }}
{{- $namespaces = compact (list $namespaces) }}
{{- end }}
{{- toJson $namespaces }}
{{- end }}

{{/* The Lease name (`--lease-name`). */}}
{{- define "vane.leaseName" -}}
{{- default (printf "%s-leader" (include "vane.fullname" .)) .Values.controller.leaseName }}
{{- end }}

{{/* The Service written into Ingress status (`--publish-service`), as NAMESPACE/NAME. */}}
{{- define "vane.publishService" -}}
{{- default (printf "%s/%s" .Release.Namespace (include "vane.fullname" .)) .Values.controller.publishService.name }}
{{- end }}

{{/* Whether the controller is a Deployment, failing on anything but the two kinds. */}}
{{- define "vane.isDeployment" -}}
{{- if eq .Values.controller.kind "Deployment" }}true
{{- else if ne .Values.controller.kind "DaemonSet" }}
{{- fail (printf "controller.kind must be Deployment or DaemonSet, not %q" .Values.controller.kind) }}
{{- end }}
{{- end }}

{{/*
The fewest replicas the Deployment runs: autoscaling.minReplicas with autoscaling, else
controller.replicas; 0 for a DaemonSet (its count depends on the nodes).
*/}}
{{- define "vane.minReplicas" -}}
{{- if not (include "vane.isDeployment" .) }}0
{{- else if .Values.autoscaling.enabled }}{{ .Values.autoscaling.minReplicas }}
{{- else }}{{ .Values.controller.replicas }}
{{- end }}
{{- end }}
