//! lowbit-kernels-sys (placeholder)
