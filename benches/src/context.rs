//! [`BenchContext`]: the opened device, the stream every timed launch goes to, and what the
//! report records about the card and the software (see [`report`](crate::report)).

use std::sync::Arc;

use cudarc::driver::CudaStream;
use lowbit_cuda::{CudaError, Device};

use crate::baseline::{self, Cublas};
use crate::card::{card_slug, hbm_peak};
use crate::error::{BenchError, Result};
use crate::nvml::NvmlSampler;
use crate::report::{CardInfo, SoftwareInfo, cuda_version_string};
use crate::sysinfo::{self, ClockMonitor};
use crate::timing::{Timer, TimingConfig, TimingMethod};

/// Bytes copied by the bandwidth probe (each way), at most: 1 GiB (`h100-baselines.md` §1).
pub const COPY_PROBE_BYTES: usize = 1 << 30;

/// Timing of the bandwidth probes: 2 warm-ups, median of 10 single calls on the stream (no graph, no batching).
fn probe_timing() -> TimingConfig {
    TimingConfig {
        warmup: 2,
        reps: 10,
        method: TimingMethod::Stream,
        min_batch_us: 0.0,
        max_seconds_per_op: 10.0,
        ..TimingConfig::default()
    }
}

/// An opened device ready for benchmarking.
///
/// - cudarc's per-buffer event tracking is **disabled** on the context before anything is
///   allocated: the harness orders work itself (one stream, explicit synchronization), and the
///   tracking events would otherwise be recorded / waited on inside graph captures.
/// - [`BenchContext::stream`] is a fresh non-blocking stream (graph capture is impossible on the
///   legacy default stream). lowbit-cuda's uploads go through the device's default stream and
///   synchronize before returning, so their buffers are ready for this stream; code that frees
///   such buffers must synchronize this stream first.
#[derive(Debug)]
pub struct BenchContext {
    dev: Device,
    stream: Arc<CudaStream>,
    card: CardInfo,
    software: SoftwareInfo,
    cublas: Option<Cublas>,
    monitor: Option<ClockMonitor>,
    nvml: Option<Arc<NvmlSampler>>,
}

impl BenchContext {
    /// Opens device `ordinal`, creates the timing stream and (when `with_cublas`) the cuBLAS
    /// handle, gathers versions and starts the `nvidia-smi` clock sampler.
    pub fn open(ordinal: usize, with_cublas: bool) -> Result<Self> {
        let dev = Device::open(ordinal).map_err(|e| match e {
            CudaError::NoGpu { reason } => BenchError::NoGpu(reason),
            other => BenchError::Cuda(other),
        })?;
        // SAFETY: nothing has been allocated in this context object yet, and the harness orders all
        // of its work explicitly: one stream for timed work, synchronization around uploads and
        // before buffers are freed (see the type's documentation).
        unsafe { dev.context().disable_event_tracking() };
        let stream = dev.context().new_stream()?;
        let info = dev.info().clone();
        let selector = sysinfo::pci_bus_id(dev.context()).unwrap_or_else(|| info.ordinal.to_string());
        let cublas_dir =
            if with_cublas { baseline::ensure_cublas()? } else { baseline::ensure_cublas().ok().flatten() };
        let cublas = if with_cublas { Some(Cublas::new(stream.clone())?) } else { None };
        let (cublas_str, cublas_int) = if baseline::cublas_present() {
            let v = baseline::cublas_version().ok().map(|(a, b, c)| format!("{a}.{b}.{c}"));
            (v, cublas.as_ref().and_then(|c| c.version().ok()))
        } else {
            (None, None)
        };
        let hbm = hbm_peak(&info.name);
        let card = CardInfo {
            slug: card_slug(&info.name),
            name: info.name.clone(),
            ordinal: info.ordinal,
            pci_bus_id: sysinfo::pci_bus_id(dev.context()),
            compute_capability: format!("{}.{}", info.compute_capability.0, info.compute_capability.1),
            sm_count: info.sm_count,
            memory_bytes: info.total_memory_bytes,
            l2_cache_bytes: info.l2_cache_bytes,
            hbm_peak_gbps: hbm.map(|h| h.gbps),
            hbm_peak_source: hbm.map(|h| h.source.to_string()),
            copy_gbps: None,
            copy_bytes: None,
            read_gbps: None,
            read_bytes: None,
            clocks_start: sysinfo::query_clocks(&selector),
            clocks_end: None,
            clock_samples: None,
        };
        let software = SoftwareInfo {
            driver: sysinfo::driver_string(&selector),
            driver_cuda: cuda_version_string(info.driver_version),
            cuda_runtime: cuda_version_string(info.kernels_cudart_version),
            cublas: cublas_str,
            cublas_version: cublas_int,
            cublas_library: baseline::loaded_library_path("libcublas.so"),
            cublaslt_library: baseline::loaded_library_path("libcublasLt.so"),
            cublas_found_in: cublas_dir.map(|d| d.display().to_string()),
            nvcc: lowbit_cuda::NVCC_VERSION.to_string(),
            kernel_archs: lowbit_cuda::CUDA_ARCHS.to_string(),
            kernels_abi: lowbit_cuda::kernels_abi_version(),
            lowbit_bench: env!("CARGO_PKG_VERSION").to_string(),
        };
        let monitor = ClockMonitor::start(&selector);
        let nvml = NvmlSampler::start(card.pci_bus_id.as_deref(), info.ordinal).map(Arc::new);
        Ok(Self { dev, stream, card, software, cublas, monitor, nvml })
    }

    /// The lowbit-cuda device.
    pub fn device(&self) -> &Device {
        &self.dev
    }

    /// The stream every timed launch goes to.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The cuBLAS handle on [`BenchContext::stream`] (when opened with cuBLAS).
    pub fn cublas(&self) -> Result<&Cublas> {
        self.cublas.as_ref().ok_or(BenchError::NoCublas)
    }

    /// What is known about the card so far.
    pub fn card(&self) -> &CardInfo {
        &self.card
    }

    /// Software versions.
    pub fn software(&self) -> &SoftwareInfo {
        &self.software
    }

    /// A timer on [`BenchContext::stream`] (recording the card's clock and power per measurement where NVML is
    /// available).
    pub fn timer(&self, cfg: TimingConfig) -> Timer {
        Timer::new(self.stream.clone(), cfg).with_nvml(self.nvml.clone())
    }

    /// The NVML sampler (per-window SM clock and power), if NVML could be opened.
    pub fn nvml(&self) -> Option<&Arc<NvmlSampler>> {
        self.nvml.as_ref()
    }

    /// Measures device-to-device copy bandwidth (`cuMemcpyDtoDAsync` of up to
    /// [`COPY_PROBE_BYTES`], read + write bytes counted, median of 10 after 2 warm-ups) and records
    /// it in the card info. Returns GB/s (10⁹ B/s).
    pub fn measure_copy_bandwidth(&mut self) -> Result<f64> {
        let bytes = COPY_PROBE_BYTES.min(self.card.memory_bytes / 8).max(1 << 20);
        let src = self.stream.alloc_zeros::<u8>(bytes)?;
        let mut dst = self.stream.alloc_zeros::<u8>(bytes)?;
        let cfg = probe_timing();
        let stream = self.stream.clone();
        let m = self.timer(cfg).measure(1, |_| Ok(stream.memcpy_dtod(&src, &mut dst)?))?;
        self.stream.synchronize()?;
        let gbps = 2.0 * bytes as f64 / (m.stats.median * 1e-6) / 1e9;
        self.card.copy_gbps = Some(gbps);
        self.card.copy_bytes = Some(bytes);
        Ok(gbps)
    }

    /// Measures the read bandwidth of the read-only streaming kernel (`lowbit_cuda::probe::read_probe` over up to
    /// [`COPY_PROBE_BYTES`], median of 10 after 2 warm-ups) and records it in the card info. Returns GB/s.
    pub fn measure_read_bandwidth(&mut self) -> Result<f64> {
        let bytes = COPY_PROBE_BYTES.min(self.card.memory_bytes / 8).max(1 << 20) / 16 * 16;
        let src = self.stream.alloc_zeros::<u8>(bytes)?;
        let mut sink = self.stream.alloc_zeros::<u32>(1)?;
        let cfg = probe_timing();
        let (dev, stream) = (self.dev.clone(), self.stream.clone());
        let m = self.timer(cfg).measure(1, |_| Ok(lowbit_cuda::probe::read_probe(&dev, &stream, &src, &mut sink)?))?;
        self.stream.synchronize()?;
        let gbps = bytes as f64 / (m.stats.median * 1e-6) / 1e9;
        self.card.read_gbps = Some(gbps);
        self.card.read_bytes = Some(bytes);
        Ok(gbps)
    }

    /// Stops the clock sampler and returns the final card info (end clocks and the samples'
    /// summary included). Later calls return the same summary without sampling again.
    pub fn finish_card(&mut self) -> CardInfo {
        if let Some(m) = self.monitor.take() {
            self.card.clock_samples = Some(m.stop());
            let selector = self.card.pci_bus_id.clone().unwrap_or_else(|| self.card.ordinal.to_string());
            self.card.clocks_end = sysinfo::query_clocks(&selector);
        }
        self.card.clone()
    }
}
