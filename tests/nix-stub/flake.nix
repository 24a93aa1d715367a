{
  # A tiny stand-in for nixpkgs, used only by tests/unit/test_flake.py:
  #   nix flake check --offline --override-input nixpkgs path:tests/nix-stub
  # It provides exactly what Matrix Gate's flake.nix uses, as plain derivations that are
  # evaluated (never built), so the flake's structure is checked without network or a
  # nixpkgs checkout.  Add an attribute here when flake.nix starts using a new package.
  description = "stub nixpkgs for checking Matrix Gate's flake offline";

  outputs = { self }:
    let
      stub = system: name: derivation {
        inherit system name;
        builder = "/bin/sh";
        args = [ "-c" "echo stub > $out" ];
      };
      pkgsFor = system:
        let pkg = stub system; in {
          mkShell = attrs: derivation ((removeAttrs attrs [ "packages" "name" ]) // {
            inherit system;
            name = attrs.name or "nix-shell";
            builder = "/bin/sh";
            args = [ "-c" "echo stub shell > $out" ];
            nativeBuildInputs = attrs.packages or [ ];
          });
          python311 = pkg "python3-3.11.10";
          git = pkg "git-2.47.0";
          qemu_kvm = pkg "qemu-host-cpu-only-9.1.1";
          qemu = pkg "qemu-9.1.1";
          chromium = pkg "chromium-131.0";
          nodejs = pkg "nodejs-20.18.1";
          stdenv.cc.cc.lib = pkg "gcc-13.3.0-lib";
        };
    in
    {
      legacyPackages = {
        x86_64-linux = pkgsFor "x86_64-linux";
        aarch64-linux = pkgsFor "aarch64-linux";
      };
    };
}
