//! specsim-calibrate: under construction.
