//! Per-measurement SM clock, power and clock-event reasons from NVML (`libnvidia-ml.so.1`, loaded at run time).
//!
//! The `nvidia-smi` sampler of [`sysinfo`](crate::sysinfo) summarizes a whole run every 250 ms, too coarse to say
//! which *point* ran at which clock: a timed batch of a bench point lasts ~50–500 ms. [`NvmlSampler`] polls the
//! card every millisecond in a background thread; [`NvmlSampler::window`] summarizes the samples taken between two
//! instants (the SM clock's median, the mean power reading, the clock-event reasons seen). The bench
//! records it per row, so a number measured under the power cap says so beside itself.
//!
//! Everything is optional: without the library, the symbols or the device, [`NvmlSampler::start`] returns `None`.

use std::ffi::{CString, c_char, c_int, c_uint, c_ulonglong, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::timing::percentile;

type Dev = *mut c_void;
type Init = unsafe extern "C" fn() -> c_int;
type ByPci = unsafe extern "C" fn(*const c_char, *mut Dev) -> c_int;
type ByIndex = unsafe extern "C" fn(c_uint, *mut Dev) -> c_int;
type ClockInfo = unsafe extern "C" fn(Dev, c_int, *mut c_uint) -> c_int;
type PowerUsage = unsafe extern "C" fn(Dev, *mut c_uint) -> c_int;
type Reasons = unsafe extern "C" fn(Dev, *mut c_ulonglong) -> c_int;
type Temperature = unsafe extern "C" fn(Dev, c_int, *mut c_uint) -> c_int;

/// `NVML_CLOCK_SM`.
const CLOCK_SM: c_int = 1;
/// `NVML_TEMPERATURE_GPU`.
const TEMP_GPU: c_int = 0;

/// The NVML entry points used here, with the library kept loaded.
struct Api {
    _lib: libloading::Library,
    dev: Dev,
    clock: ClockInfo,
    power: PowerUsage,
    reasons: Option<Reasons>,
    temp: Option<Temperature>,
}

// SAFETY: an NVML device handle is an opaque pointer that NVML documents as usable from any thread (its query
// functions are thread-safe); the function pointers are plain C functions of a library kept loaded by `_lib`.
unsafe impl Send for Api {}

impl Api {
    fn open(pci_bus_id: Option<&str>, ordinal: usize) -> Option<Api> {
        // SAFETY: loading the driver's NVML library runs its initializers, which have no preconditions.
        let lib = unsafe { libloading::Library::new("libnvidia-ml.so.1") }.ok()?;
        // SAFETY: the symbol types match NVML's C declarations (nvml.h, API v2 names).
        unsafe {
            let init: Init = *lib.get::<Init>(b"nvmlInit_v2\0").ok()?;
            if init() != 0 {
                return None;
            }
            let mut dev: Dev = std::ptr::null_mut();
            let by_pci = lib.get::<ByPci>(b"nvmlDeviceGetHandleByPciBusId_v2\0").ok().map(|f| *f);
            let found = match (pci_bus_id.and_then(|p| CString::new(p).ok()), by_pci) {
                (Some(p), Some(f)) => f(p.as_ptr(), &mut dev) == 0,
                _ => false,
            };
            if !found {
                let by_index: ByIndex = *lib.get::<ByIndex>(b"nvmlDeviceGetHandleByIndex_v2\0").ok()?;
                if by_index(ordinal as c_uint, &mut dev) != 0 {
                    return None;
                }
            }
            let clock: ClockInfo = *lib.get::<ClockInfo>(b"nvmlDeviceGetClockInfo\0").ok()?;
            let power: PowerUsage = *lib.get::<PowerUsage>(b"nvmlDeviceGetPowerUsage\0").ok()?;
            let reasons = lib
                .get::<Reasons>(b"nvmlDeviceGetCurrentClocksEventReasons\0")
                .or_else(|_| lib.get::<Reasons>(b"nvmlDeviceGetCurrentClocksThrottleReasons\0"))
                .ok()
                .map(|f| *f);
            let temp = lib.get::<Temperature>(b"nvmlDeviceGetTemperature\0").ok().map(|f| *f);
            let mut mhz: c_uint = 0;
            if clock(dev, CLOCK_SM, &mut mhz) != 0 {
                return None;
            }
            Some(Api { _lib: lib, dev, clock, power, reasons, temp })
        }
    }

    fn sample(&self) -> Sample {
        let (mut mhz, mut mw, mut r, mut t): (c_uint, c_uint, c_ulonglong, c_uint) = (0, 0, 0, 0);
        // SAFETY: `dev` is a valid handle of the initialized library; the out-pointers are live locals.
        unsafe {
            let sm = ((self.clock)(self.dev, CLOCK_SM, &mut mhz) == 0).then_some(mhz as f32);
            let w = ((self.power)(self.dev, &mut mw) == 0).then_some(mw as f32 / 1000.0);
            let reasons = self.reasons.and_then(|f| (f(self.dev, &mut r) == 0).then_some(r));
            let temp = self.temp.and_then(|f| (f(self.dev, TEMP_GPU, &mut t) == 0).then_some(t as f32));
            Sample { at: Instant::now(), sm_mhz: sm, power_w: w, reasons, temp_c: temp }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    sm_mhz: Option<f32>,
    power_w: Option<f32>,
    reasons: Option<u64>,
    temp_c: Option<f32>,
}

/// What the card did during one time window (one measurement's timed batches).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Window {
    /// Samples in the window.
    pub samples: usize,
    /// Median SM clock, MHz.
    pub sm_mhz: Option<f64>,
    /// Lowest SM clock sampled, MHz.
    pub sm_mhz_min: Option<f64>,
    /// Mean of the power readings, W (NVML's reading, itself averaged by the driver over up to ~1 s: indicative
    /// for windows of tens of ms).
    pub power_w: Option<f64>,
    /// Highest GPU temperature sampled, °C.
    pub temp_c: Option<f64>,
    /// Clock-event (throttle) reasons seen in any sample, by name (`sw_power_cap`, `hw_slowdown`, ...; the idle and
    /// application-clock bits are left out).
    pub reasons: Vec<String>,
}

impl Window {
    /// `"1755 MHz, 690 W, power cap"`-style summary for logs.
    pub fn brief(&self) -> String {
        let mut s = match self.sm_mhz {
            Some(m) => format!("{m:.0} MHz"),
            None => "? MHz".into(),
        };
        if let Some(w) = self.power_w {
            s += &format!(", {w:.0} W");
        }
        if let Some(t) = self.temp_c {
            s += &format!(", {t:.0} C");
        }
        if !self.reasons.is_empty() {
            s += &format!(", {}", self.reasons.join("+"));
        }
        s
    }
}

/// Names of NVML's clock-event reason bits worth reporting.
pub fn reason_names(bits: u64) -> Vec<String> {
    const NAMES: [(u64, &str); 6] = [
        (0x4, "sw_power_cap"),
        (0x8, "hw_slowdown"),
        (0x20, "sw_thermal"),
        (0x40, "hw_thermal"),
        (0x80, "hw_power_brake"),
        (0x100, "display_clock"),
    ];
    NAMES.iter().filter(|(b, _)| bits & b != 0).map(|(_, n)| n.to_string()).collect()
}

/// Polls NVML every millisecond in a background thread (see the module documentation).
pub struct NvmlSampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for NvmlSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlSampler").finish_non_exhaustive()
    }
}

/// Samples kept at most (a 1 ms poll for ~30 minutes); older ones are dropped.
const MAX_SAMPLES: usize = 2_000_000;

impl NvmlSampler {
    /// Starts polling the card with PCI bus id `pci_bus_id` (else NVML index `ordinal`); `None` without NVML.
    pub fn start(pci_bus_id: Option<&str>, ordinal: usize) -> Option<NvmlSampler> {
        let api = Api::open(pci_bus_id, ordinal)?;
        let samples = Arc::new(Mutex::new(Vec::with_capacity(1 << 16)));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s, st) = (api, samples.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("nvml-sampler".into())
            .spawn(move || {
                while !st.load(Ordering::Relaxed) {
                    let x = a.sample();
                    if let Ok(mut v) = s.lock() {
                        if v.len() >= MAX_SAMPLES {
                            v.drain(..MAX_SAMPLES / 2);
                        }
                        v.push(x);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
            .ok()?;
        Some(NvmlSampler { samples, stop, thread: Some(thread) })
    }

    /// Summary of the samples between `from` and `to`.
    pub fn window(&self, from: Instant, to: Instant) -> Window {
        let v: Vec<Sample> = self
            .samples
            .lock()
            .map(|s| s.iter().filter(|x| x.at >= from && x.at <= to).copied().collect())
            .unwrap_or_default();
        let mut mhz: Vec<f64> = v.iter().filter_map(|x| x.sm_mhz.map(f64::from)).collect();
        mhz.sort_by(f64::total_cmp);
        let bits = v.iter().filter_map(|x| x.reasons).fold(0u64, |a, b| a | b);
        let temp = v.iter().filter_map(|x| x.temp_c.map(f64::from)).reduce(f64::max);
        let power: Vec<f64> = v.iter().filter_map(|x| x.power_w.map(f64::from)).collect();
        Window {
            samples: v.len(),
            sm_mhz: (!mhz.is_empty()).then(|| percentile(&mhz, 0.5)),
            sm_mhz_min: mhz.first().copied(),
            power_w: (!power.is_empty()).then(|| power.iter().sum::<f64>() / power.len() as f64),
            temp_c: temp,
            reasons: reason_names(bits),
        }
    }
}

impl Drop for NvmlSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_bits_are_named() {
        assert!(reason_names(0x1 | 0x2).is_empty());
        assert_eq!(reason_names(0x4), vec!["sw_power_cap"]);
        assert_eq!(reason_names(0x4 | 0x40), vec!["sw_power_cap", "hw_thermal"]);
        let w = Window {
            samples: 3,
            sm_mhz: Some(1755.0),
            power_w: Some(690.4),
            reasons: reason_names(0x4),
            ..Window::default()
        };
        assert_eq!(w.brief(), "1755 MHz, 690 W, sw_power_cap");
        assert_eq!(Window::default().brief(), "? MHz");
    }
}
