"""The built-in domain plugins (legal, support, marketing). In a wheel they are the package
`domaintune_plugins`, a name no user project has; a checkout links src/domaintune_plugins here."""
