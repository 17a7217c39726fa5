from gpusupply.cli.main import app

app()
