"""Pure logic, no I/O: DICOM matching rules, attribute levels, name normalisation."""
