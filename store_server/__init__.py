"""store_server"""
