"""De-identified research exports (issue 15): cohort, PS3.15 Annex E profile, pseudonyms,
nodule CSV, manifest; stored exports for the researcher role."""
