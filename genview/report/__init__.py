"""The paper's tables, rendered only from evaluation result files (Markdown, LaTeX and CSV)."""
