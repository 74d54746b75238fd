"""checkout_node"""
