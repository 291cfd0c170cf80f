"""Example Baton plugin: a GitHub issues tool and an audit hook."""
