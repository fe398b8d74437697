"""Release engineering over the framework: the preflight checklist, the DOT inventory and the
acknowledged extras, the registry's SSOT check, adopt, the run report, the static lint and the
runtime data scripts."""
