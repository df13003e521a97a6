"""Front doors: the FastAPI app, the Typer CLI and the job schemas. No model code here."""
