"""The baseline for ``GET /livez``: a bare Flask app, as Flask's quickstart
writes one, served by the same gunicorn command line as Lockbox.

    gunicorn -c gunicorn.conf.py 'bench.bare_app:app'
"""

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/livez")
def livez():
    """The same answer as Lockbox's liveness check."""
    return jsonify({"status": "ok"})
