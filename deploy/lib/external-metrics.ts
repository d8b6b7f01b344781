// Metrics the dashboards and alerts use that no Spark service defines: they come from exporters a cluster
// runs beside Spark. Listed here (with where they come from) so the metric-existence checks still reject
// a misspelt name; docs/metrics.md prints this table.

export interface ExternalMetric {
  name: string;
  source: string;
  meaning: string;
}

const REDIS = 'redis_exporter v1.97.0 (the bundled Redis sidecar)';
const KSM = 'kube-state-metrics';
const KUBELET = 'kubelet (cAdvisor/volume stats, scraped by kube-prometheus-stack)';
const DCGM = 'NVIDIA DCGM exporter (gpu-operator); optional';

export const EXTERNAL_METRICS: ExternalMetric[] = [
  { name: 'up', source: 'Prometheus', meaning: 'Whether the last scrape of a target succeeded' },
  { name: 'redis_up', source: REDIS, meaning: 'Whether the exporter could reach Redis' },
  { name: 'redis_memory_used_bytes', source: REDIS, meaning: 'Redis `used_memory`' },
  { name: 'redis_memory_max_bytes', source: REDIS, meaning: 'Redis `maxmemory`' },
  { name: 'redis_rejected_connections_total', source: REDIS, meaning: 'Connections refused (maxclients)' },
  { name: 'redis_connected_clients', source: REDIS, meaning: 'Client connections' },
  { name: 'redis_commands_processed_total', source: REDIS, meaning: 'Commands processed' },
  { name: 'redis_aof_rewrite_in_progress', source: REDIS, meaning: 'Whether an AOF rewrite (fork) runs' },
  {
    name: 'kube_pod_container_status_restarts_total',
    source: KSM,
    meaning: 'Container restarts',
  },
  {
    name: 'kube_pod_container_status_last_terminated_reason',
    source: KSM,
    meaning: 'Why a container last terminated (`reason` label, e.g. OOMKilled)',
  },
  { name: 'kubelet_volume_stats_available_bytes', source: KUBELET, meaning: 'Free bytes of a PVC' },
  { name: 'kubelet_volume_stats_capacity_bytes', source: KUBELET, meaning: 'Capacity of a PVC' },
  { name: 'kubelet_volume_stats_used_bytes', source: KUBELET, meaning: 'Used bytes of a PVC' },
  { name: 'DCGM_FI_DEV_GPU_UTIL', source: DCGM, meaning: 'GPU utilisation (%)' },
  { name: 'DCGM_FI_DEV_FB_USED', source: DCGM, meaning: 'GPU framebuffer memory used (MiB)' },
  { name: 'DCGM_FI_DEV_FB_FREE', source: DCGM, meaning: 'GPU framebuffer memory free (MiB)' },
  { name: 'DCGM_FI_DEV_POWER_USAGE', source: DCGM, meaning: 'GPU power draw (W)' },
];
