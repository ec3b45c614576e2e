"""Replication, the use-case side: central's push apply (`central`), the apply every store shares (`apply`),
the ownership policy that decides conflicts (`ownership`), and the edge's pull and resync (`edge`)."""
