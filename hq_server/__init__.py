"""The chain's HQ: enrols stores, pools what they learn, trains once for all of them and ships
one signed model to every store."""
