"""The shop the connections benchmark serves: one table per tenant, one view that reads it."""
