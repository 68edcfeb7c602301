"""Looking at an archive: status, verify against the server, the coverage report (HTML, PNG)."""
