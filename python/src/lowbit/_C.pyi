"""Type stubs of the Rust extension module `lowbit._C` (crates/lowbit-py)."""

from typing import Optional

__version__: str

class QWeight:
    @property
    def shape(self) -> tuple[int, int]: ...
    @property
    def scheme(self) -> str: ...
    @property
    def storage_bytes(self) -> int: ...
    @property
    def act_order(self) -> bool: ...
    def dequantize(self) -> bytes: ...
    def tensors(self) -> list[tuple[str, str, list[int], bytes]]: ...
    def type_histogram(self) -> Optional[list[int]]: ...

def parse_scheme(scheme: str) -> str: ...
def bits_per_weight(scheme: str, k: int) -> float: ...
def quantize(data: bytes, n: int, k: int, scheme: str, perm: Optional[list[int]] = None) -> QWeight: ...
def save_checkpoint(
    path: str,
    layers: list[tuple[str, QWeight]],
    passthrough: list[tuple[str, list[int], bytes, bool]],
    source: dict[str, str],
) -> None: ...
def load_checkpoint(
    path: str,
) -> tuple[list[tuple[str, QWeight]], list[tuple[str, list[int], bytes, str]], dict[str, str]]: ...
def is_checkpoint(path: str) -> bool: ...
def checkpoint_format_version() -> str: ...

class GpuGemm:
    def __init__(self, weight: QWeight, device: int) -> None: ...
    @property
    def shape(self) -> tuple[int, int]: ...
    @property
    def device(self) -> int: ...
    def workspace_bytes(self, m: int, dtype: str) -> int: ...
    def workspace_spec(self, m: int, dtype: str) -> tuple[int, int]: ...
    def run(
        self, x: int, ldx: int, y: int, m: int, dtype: str, workspace: int, workspace_bytes: int, stream: int
    ) -> None: ...

class Int8Gemm:
    def __init__(
        self,
        codes: bytes,
        n: int,
        k: int,
        scales: bytes,
        device: int,
        w_bits: int = 8,
        group_scales: Optional[bytes] = None,
        group_size: Optional[int] = None,
    ) -> None: ...
    @property
    def shape(self) -> tuple[int, int]: ...
    @property
    def device(self) -> int: ...
    def workspace_bytes(self, m: int) -> int: ...
    def run(
        self,
        x: int,
        ldx: int,
        m: int,
        y: int,
        ldy: int,
        out: str,
        row_scales: int,
        row_scale_value: float,
        bias: int,
        out_scale: float,
        out_scales: int,
        workspace: int,
        workspace_bytes: int,
        stream: int,
    ) -> None: ...

def act_quant(
    x: int,
    ldx: int,
    residual: int,
    gamma: int,
    eps: float,
    hadamard: int,
    static_scale: Optional[float],
    q: int,
    ldq: int,
    scales: int,
    m: int,
    k: int,
    dtype: str,
    device: int,
    stream: int,
) -> None: ...
def quantize_w8a8(data: bytes, n: int, k: int) -> tuple[bytes, bytes]: ...
def quantize_w4a8(data: bytes, n: int, k: int, group: Optional[int] = None) -> tuple[bytes, Optional[bytes], bytes]: ...
def int8_operands(weight: QWeight) -> tuple[bytes, bytes]: ...
def qweight_from_fields(scheme: str, n: int, k: int, fields: dict[str, bytes]) -> QWeight: ...
def gpu_available() -> bool: ...
def build_info() -> dict[str, object]: ...
def device_info(ordinal: int) -> dict[str, object]: ...

class HessianAccumulator:
    def __init__(self, k: int) -> None: ...
    def update(self, data: bytes, rows: int) -> None: ...
    @property
    def samples(self) -> int: ...
    @property
    def k(self) -> int: ...
    def finish(self) -> Hessian: ...

class Hessian:
    @property
    def k(self) -> int: ...
    @property
    def samples(self) -> int: ...
    def diag(self) -> list[float]: ...
    def output_error(self, w: bytes, w_hat: bytes, n: int) -> float: ...

class ActivationObserver:
    def __init__(self, bins: int = 2048) -> None: ...
    def update(self, data: bytes, rows: int, k: int) -> None: ...
    def static_scale(self, method: str = "mse", percentile: float = 99.99) -> float: ...

def gptq_quantize(
    w: bytes,
    n: int,
    k: int,
    hessian: Hessian,
    scheme: str,
    *,
    damp_percent: float = 0.01,
    block_size: int = 128,
    act_order: bool = False,
    static_groups: bool = False,
    datatype_metric: str = "mse",
    clip_search: bool = False,
) -> tuple[QWeight, dict[str, object]]: ...
def rtn_quantize(
    w: bytes,
    n: int,
    k: int,
    scheme: str,
    *,
    datatype_metric: str = "mse",
    hessian: Optional[Hessian] = None,
    candidates: Optional[list[int]] = None,
) -> QWeight: ...

# --- Quamba / Quamba2 calibrator (crates/lowbit-py/src/quamba.rs over lowbit_calib::quamba) ---------------
# Arrays are little-endian float32 `bytes` (e.g. `t.detach().float().contiguous().cpu().numpy().tobytes()`),
# row-major, with explicit sizes. Errors: bad sizes/values/options, NaN/inf data, asking for a statistic
# before any sample -> ValueError. Every static scale is max(clip / 127, 1e-6) (symmetric int8, codes -127..127).

def abs_quantile(data: bytes, n: int, alpha: float) -> float:
    """The alpha-quantile of |x| over `n` float32 values, alpha in (0, 1], linear interpolation between
    order statistics (same definition as `torch.quantile(x.abs().flatten(), alpha)`), exact."""
    ...

class PercentileObserver:
    """Quamba's percentile observer (Mamba1 SSM input x and SSM state, or Mamba2 without sort-and-cluster).

    Per calibration sample: cur = quantile(|x|, alpha) over all of the sample's elements; the first sample
    initializes the running value m, every later one does m += momentum * (cur - m). alpha and momentum must
    be in (0, 1]. A sample that fails (NaN/inf, empty) leaves the observer unchanged."""

    def __init__(self, alpha: float = 0.9995, momentum: float = 0.01) -> None: ...
    def update(self, data: bytes, n: int) -> float:
        """One calibration sample of `n` float32 values (any shape, flattened); returns its quantile `cur`."""
        ...
    def value(self) -> float:
        """The running clip value m (ValueError before any sample)."""
        ...
    def scale(self) -> float:
        """The static int8 scale max(m / 127, 1e-6)."""
        ...
    @property
    def samples(self) -> int: ...
    @property
    def alpha(self) -> float: ...
    @property
    def momentum(self) -> float: ...

class GroupAbsMaxObserver:
    """Running absmax per group of columns (Quamba2's B/C, x and SSM-state scales; per-tensor absmax taps).

    Data arrive as [rows, cols] float32 (rows = every leading axis flattened: batch*tokens for activations,
    batch for the state); column c belongs to the flat group col_group[c] (row-major over `shape`) or to
    none (-1). absmax()/scales() are flat lists of prod(shape) values, row-major over `shape`; a group that
    no column maps to keeps absmax 0 (scale 1e-6)."""

    def __init__(self, shape_groups: list[int], col_group: list[int]) -> None: ...
    @staticmethod
    def per_tensor(cols: int) -> GroupAbsMaxObserver:
        """One scale: data [rows, cols] -> shape [1]."""
        ...
    @staticmethod
    def per_state_group(ngroups: int, dstate: int) -> GroupAbsMaxObserver:
        """Mamba2 B or C (conv output), one scale per SSD group: data [rows, ngroups*dstate] (i.e.
        [batch, seqlen, ngroups, dstate] flattened) -> shape [ngroups]; absmax over batch, tokens, d_state."""
        ...
    @staticmethod
    def x_clusters(clusters: dict[str, object], layout: str = "original") -> GroupAbsMaxObserver:
        """Quamba2 SSD input x (conv output after SiLU): data [rows, nheads*headdim] -> shape
        [ngroups, head_clusters, dim_clusters]. `clusters` is the dict of quamba_sort_and_cluster (only its
        head_perm, channel_perm, head_group_range, dim_group_range keys are read and validated). `layout`:
        "original" when the data's channels are in the model's original order, "reordered" when
        channel_perm has already been applied to the model (new channel i = old channel channel_perm[i])."""
        ...
    @staticmethod
    def ssm_state(clusters: dict[str, object], dstate: int, layout: str = "original") -> GroupAbsMaxObserver:
        """Quamba2 SSM-state scales: data [batch, nheads*headdim*dstate] (the state [B, H, P, N] flattened)
        -> shape [ngroups, head_clusters, dim_clusters, dstate]: absmax over batch, the heads of a head
        cluster and the channels of a channel group, separately per state index n. `layout` as x_clusters."""
        ...
    def update(self, data: bytes, rows: int) -> None:
        """Adds `rows` rows of `cols` float32 values (0 rows: no-op; a failing update changes nothing)."""
        ...
    def absmax(self) -> list[float]:
        """Running absmax per group, flat (ValueError before any row)."""
        ...
    def scales(self) -> list[float]:
        """max(absmax / 127, 1e-6) per group, flat (ValueError before any row)."""
        ...
    @property
    def shape(self) -> list[int]: ...
    @property
    def cols(self) -> int: ...
    @property
    def rows(self) -> int: ...
    @property
    def updates(self) -> int: ...

class ChannelMeanAbsMax:
    """The sort-and-cluster statistic of Quamba2's reference code: per channel, max over calibration samples
    of mean_t |x_t[c]| (mean over one sample's rows/tokens). Feed it x_conv_out in the original order."""

    def __init__(self, channels: int) -> None: ...
    def update(self, data: bytes, rows: int) -> None:
        """One calibration sample: `rows` >= 1 rows of `channels` float32 values."""
        ...
    def stat(self) -> bytes:
        """The statistic, float32 bytes [channels] (ValueError before any sample)."""
        ...
    @property
    def samples(self) -> int: ...
    @property
    def channels(self) -> int: ...

def quamba_sort_and_cluster(
    stat: bytes,
    ngroups: int,
    nheads_per_group: int,
    headdim: int,
    head_clusters: int = 4,
    dim_clusters: int = 4,
) -> dict[str, object]:
    """Quamba2 sort-and-cluster over stat[ngroups, nheads_per_group, headdim] (float32 bytes, one value per
    x channel in the original order, e.g. ChannelMeanAbsMax.stat()). Deterministic.

    Per head, channels are sorted ascending by stat (stable); per SSD group the heads' L2-normalized sorted
    vectors are Ward-clustered into head_clusters clusters (numbered by smallest head index; heads ordered by
    cluster, ascending head index inside); per head cluster the sorted channel positions are split into
    dim_clusters contiguous groups (K-means from positions i*headdim/dim_clusters, or the optimal contiguous
    segmentation when K-means is not contiguous). Returns:

    - "head_perm": list[int], nheads = ngroups*nheads_per_group entries, new head position -> old (global)
      head index; heads never leave their SSD group (apply to dt rows of in_proj, A_log, D, dt_bias).
    - "channel_perm": list[int], nheads*headdim entries, new channel position -> old channel index within x
      (apply to z and x rows of in_proj, conv1d x channels, the gated-norm weight, out_proj input columns);
      new head j's channels are old head head_perm[j]'s, so channels never leave their head.
    - "head_group_range": list[list[int]] [ngroups][head_clusters], cumulative head counts within the group
      (last = nheads_per_group), in the reordered head order (Quamba2's x_head_group_range).
    - "dim_group_range": list[list[list[int]]] [ngroups][head_clusters][dim_clusters], cumulative channel
      counts within a head (last = headdim), shared by all heads of the head cluster (x_dim_group_range).
    - "ngroups", "nheads_per_group", "headdim", "head_clusters", "dim_clusters": int.
    - "segmentation": list[list[str]] [ngroups][head_clusters]: "kmeans", "dp" (fallback) or "trivial".

    Degenerate sizes: with fewer heads than head_clusters (or headdim < dim_clusters) the trailing clusters
    (groups) are empty, i.e. repeated cumulative counts. Errors: a zero size, wrong byte length, NaN/inf."""
    ...

def quamba_channel_groups(clusters: dict[str, object], layout: str = "original") -> list[int]:
    """For each x channel (nheads*headdim entries, in `layout` order: "original" or "reordered"), its flat
    cluster index (g*head_clusters + head_cluster)*dim_clusters + dim_group. Indexing the flat
    [ngroups, head_clusters, dim_clusters] scales (GroupAbsMaxObserver.x_clusters(...).scales()) with it
    gives the per-channel x scale vector the kernels take; for the SSM state [H, P, N], scale[c, n] =
    state_scales[groups[c]*dstate + n]."""
    ...

def fuse_hadamard(w: bytes, rows: int, cols: int, side: str, block: int) -> bytes:
    """Fuses the normalized block-diagonal Hadamard H (blocks of `block`, a power of two dividing the
    transformed dimension; 1 = identity; H symmetric and orthonormal, the same transform as lowbit's FWHT
    kernels) into the row-major float32 weight w[rows, cols] of y = W x. side "input": W <- W H (requires
    block | cols; then (W H)(H x) == W x, for in_proj after a rotated residual and out_proj after the
    online FWHT of y); side "output": W <- H W (requires block | rows; the output comes out rotated).
    Returns the new float32 bytes [rows, cols]."""
    ...

def hadamard_block(dim: int, max_block: int) -> int:
    """The largest power of two that divides `dim` and is <= max_block (1 for odd dim), e.g. 1536 -> 512."""
    ...

# Mamba2 SSD kernels (crates/lowbit-py/src/ssd.rs; used by lowbit.ssd_ops). Device tensors as data_ptr() integers
# (0 = absent), token-row strides in elements, torch's current stream.
def ssd_chunk_scan_int8(
    *,
    device: int,
    x: int,
    ldx: int,
    x_scale: int,
    dt: int,
    lddt: int,
    dt_scale: float,
    dt_bias: int,
    a: int,
    b: int,
    c: int,
    ldbc: int,
    b_scale: int,
    c_scale: int,
    d: int,
    dt_lo: float,
    dt_hi: float,
    initial_state: int,
    y: int,
    final_state: int,
    batch: int,
    length: int,
    nheads: int,
    headdim: int,
    ngroups: int,
    dstate: int,
    stream: int,
) -> None: ...
def ssd_state_update_int8(
    *,
    device: int,
    state: int,
    x: int,
    ldx: int,
    x_scale: int,
    dt: int,
    lddt: int,
    dt_scale: float,
    dt_bias: int,
    a: int,
    b: int,
    c: int,
    ldbc: int,
    b_scale: int,
    c_scale: int,
    d: int,
    dt_lo: float,
    dt_hi: float,
    y: int,
    batch: int,
    nheads: int,
    headdim: int,
    ngroups: int,
    dstate: int,
    stream: int,
) -> None: ...

# --- SSM kernels, Mamba1 side and shared pieces (crates/lowbit-py/src/ssm.rs over lowbit_cuda::ssm) -----------
# Raw launchers for lowbit.ssm_ops: device tensors as data_ptr() integers (0 = absent), row strides `ld*` in
# elements between consecutive tokens, torch's current stream. Asynchronous. Bad sizes / alignment / arguments
# -> ValueError, CUDA failures -> RuntimeError.

def ssm_conv1d_int8(
    *,
    device: int,
    x: int,
    ldx: int,
    batch: int,
    length: int,
    channels: int,
    x_scale: int,
    weight: int,
    width: int,
    bias: int,
    out_scale: int,
    silu: bool,
    y: int,
    ldy: int,
    stream: int,
) -> None: ...
def ssm_conv1d_update_int8(
    *,
    device: int,
    x: int,
    ldx: int,
    conv_state: int,
    batch: int,
    channels: int,
    x_scale: int,
    weight: int,
    width: int,
    bias: int,
    out_scale: int,
    silu: bool,
    y: int,
    ldy: int,
    stream: int,
) -> None: ...
def ssm_selective_scan_int8(
    *,
    device: int,
    u: int,
    ldu: int,
    u_scale: int,
    dt: int,
    lddt: int,
    dt_scale: float,
    dt_bias: int,
    dt_add: float,
    delta_softplus: bool,
    a: int,
    b: int,
    ldb: int,
    b_scale: float,
    c: int,
    ldc: int,
    c_scale: float,
    d_skip: int,
    z: int,
    ldz: int,
    z_scale: float,
    batch: int,
    length: int,
    dim: int,
    dstate: int,
    reverse: bool,
    initial_state: int,
    final_state: int,
    y: int,
    ldy: int,
    step: bool,
    stream: int,
) -> None: ...
def ssm_gated_rmsnorm_quant(
    *,
    device: int,
    y: int,
    ldy: int,
    z: int,
    ldz: int,
    z_scale: float,
    weight: int,
    rows: int,
    dim: int,
    group_size: int,
    eps: float,
    norm: bool,
    hadamard: int,
    out_scale: float,
    q: int,
    ldq: int,
    stream: int,
) -> None: ...
def ssm_residual_rmsnorm_quant(
    *,
    device: int,
    x: int,
    ldx: int,
    residual: int,
    ldr: int,
    out: int,
    ldo: int,
    gamma: int,
    eps: float,
    hadamard: int,
    static_scale: float,
    q: int,
    ldq: int,
    rows: int,
    k: int,
    dtype: str,
    stream: int,
) -> None: ...
