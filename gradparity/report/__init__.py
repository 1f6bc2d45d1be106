"""The HTML report of a result folder: tables, figures (embedded PNG) and, given a second
folder, the diff of the two (`gradparity.report.page`)."""
