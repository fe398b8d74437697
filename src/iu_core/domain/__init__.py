"""The IU Core domain: the dot_iu_* command registry, the operator runtime, manifests (text as
code), seed 000's proof, the privilege policy and the demo data guard."""
