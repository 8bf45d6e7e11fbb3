"""Dashboards: OpenSearch Dashboards saved objects for AWS and the live local dashboard."""
