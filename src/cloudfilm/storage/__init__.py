"""Blob stores and the SQL index, behind narrow interfaces."""
