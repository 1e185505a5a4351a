"""evaluation: tooling beside the stages (imports them; never imported by them)."""
