//! specsim-traces: under construction.
