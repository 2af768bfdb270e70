"""Training data of paper §3.4: artifact masks (G), perturbations (S, T), sample builders for both modes, readers
and the mixing dataset. Import from the sub-modules (``refalign.data.samples`` …); nothing is loaded here."""
