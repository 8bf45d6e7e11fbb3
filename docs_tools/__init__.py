"""Tools that make the README's pictures. They may use every part of the project (the job's core,
the fetcher's sample data, the alerts, the dashboard), which the parts themselves may not."""
