{
  # Matrix Gate's development shell:  nix develop          (then ./scripts/run-gate, ./scripts/test)
  #                                    nix develop -c ./scripts/run-gate
  #                                    nix develop .#browser   (adds Chromium for the browser tests)
  #
  # Why a venv and not nixpkgs' Python packages: Matrix Gate pins Buildbot 4.3.0 and its exact
  # companions (buildbot-www, the view plugins, buildbot-wsgi-dashboards, Twisted, SQLAlchemy,
  # psycopg; see pyproject.toml) because the gate relies on 4.3's behaviour.  A nixpkgs release
  # carries whichever Buildbot version (and plugin builds) it happens to have, not these pins, so
  # the shell gives the *system* pieces (Python 3.11, git, QEMU with qemu-img) from nixpkgs and its
  # shellHook installs the pinned Python packages with `pip install -e .[test]` into ./.venv,
  # once per version of pyproject.toml (the same .venv and stamp files scripts/bootstrap.sh
  # uses, so the scripts find it ready).  The first entry needs network access to PyPI.
  description = "Matrix Gate: a Buildbot 4.3 master that gates release tags on an integration matrix";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";

  outputs = { self, nixpkgs }:
    let
      # No nixpkgs.lib here on purpose: the flake needs only legacyPackages.<system>, which
      # keeps it checkable offline against the small stub in tests/nix-stub/.
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: builtins.listToAttrs (map (system: { name = system; value = f system; }) systems);

      shellFor = system: { withBrowser ? false }:
        let
          pkgs = nixpkgs.legacyPackages.${system};
          # qemu_kvm is QEMU for the host's own architecture (what KVM runs); it ships
          # qemu-img and qemu-nbd too, i.e. what Debian splits into qemu-system-x86 + qemu-utils.
          qemu = pkgs.qemu_kvm;
        in
        pkgs.mkShell ({
          name = if withBrowser then "matrixgate-browser" else "matrixgate";
          packages = [ pkgs.python311 pkgs.git qemu ] ++ (if withBrowser then [ pkgs.chromium pkgs.nodejs ] else [ ]);
          # Wheels from PyPI (greenlet, psycopg-binary, ...) are built for FHS systems: give
          # them the C++ runtime they link against.
          MATRIXGATE_NIX_LD_LIBRARY_PATH = "${pkgs.stdenv.cc.cc.lib}/lib";
          shellHook = ''
            # pip builds wheels with zip, which refuses the 1980-01-01 epoch nix sets.
            unset SOURCE_DATE_EPOCH
            export LD_LIBRARY_PATH="$MATRIXGATE_NIX_LD_LIBRARY_PATH''${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
            if [ -f pyproject.toml ] && grep -q '^name = "matrixgate"' pyproject.toml; then
              if [ ! -x .venv/bin/python ]; then
                python3 -m venv .venv
              fi
              stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
              if [ ! -e "$stamp[test]" ]; then
                echo "matrixgate: installing the pinned Python packages into .venv (pip install -e .[test])" >&2
                .venv/bin/pip install -q --disable-pip-version-check -e '.[test]' \
                  && touch "$stamp" "$stamp[test]"
              fi
              export VIRTUAL_ENV="$PWD/.venv"
              export PATH="$VIRTUAL_ENV/bin:$PATH"
            else
              echo "matrixgate: run 'nix develop' from the repository root to get .venv set up" >&2
            fi
          '';
        } // (if withBrowser then {
          # tests/browser reads it (default /usr/bin/chromium); unset in the default shell, so
          # the browser tests skip there instead of launching a missing browser.
          MATRIXGATE_CHROMIUM = "${pkgs.chromium}/bin/chromium";
          # The playwright wheel's bundled Node.js is linked for FHS systems (NixOS has no
          # /lib64/ld-linux*): run its driver with nixpkgs' Node.js instead.
          PLAYWRIGHT_NODEJS_PATH = "${pkgs.nodejs}/bin/node";
        } else { }));
    in
    {
      devShells = forAllSystems (system: {
        default = shellFor system { };
        browser = shellFor system { withBrowser = true; };
      });
    };
}
