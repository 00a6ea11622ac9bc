package sql

// InstallFS exposes the installer over any set of files, so that tests can
// exercise upgrades between versions that do not exist yet.
var InstallFS = install
