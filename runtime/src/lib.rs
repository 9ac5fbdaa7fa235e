//! specsim-runtime: under construction.
