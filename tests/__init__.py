"""Tests of the sector-rotation job (a package so that tests.s3_server can be a pytest plugin)."""
