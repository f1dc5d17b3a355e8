"""Every renderer, one module per output format: text (rich, for people), json (the documents every
other format reads), markdown (tickets, PR comments), html (one self-contained page), junit and
github (CI). Renderers read documents and results; they never reach back into a stage."""
