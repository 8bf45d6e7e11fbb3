"""Deployment: the CloudFormation template, the artifact packaging and the deploy script."""
