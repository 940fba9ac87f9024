"""Small helpers shared by every tool: errors, atomic output, run metadata."""
