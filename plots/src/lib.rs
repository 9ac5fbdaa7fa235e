//! specsim-plots: under construction.
