"""Quality-driven weights of positive pairs (docs/method.md §3): pure formulas in
:mod:`genview.quality.weights`, the frozen encoder that feeds them and the fit of its PC-1 vector in
:mod:`genview.quality.encoder`."""
