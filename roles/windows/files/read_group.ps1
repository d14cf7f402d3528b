# Read-only: the rules of the collection's group, plus any rule outside the group whose name is
# one the plan could act on (win_firewall_rule finds rules by name, so the controller refuses
# such a collision before changing anything). One pass over the firewall policy through the
# COM interface community.windows.win_firewall_rule itself uses (HNetCfg.FwPolicy2), so the
# values come back exactly in the form the module compares. SupportsShouldProcess lets
# win_powershell run it in check mode; it never changes anything.
[CmdletBinding(SupportsShouldProcess)]
param (
    [Parameter(Mandatory = $true)]
    [string]
    $Group,

    [string[]]
    $Names = @()
)

$ErrorActionPreference = 'Stop'
$Ansible.Changed = $false

$fw = New-Object -ComObject HNetCfg.FwPolicy2
$all = @($fw.Rules)

# Names compare case-insensitively, like PowerShell's -eq in win_firewall_rule.
$watch = New-Object 'System.Collections.Generic.HashSet[string]' ([System.StringComparer]::OrdinalIgnoreCase)
foreach ($n in $Names) { [void]$watch.Add([string]$n) }
foreach ($r in $all) { if ($r.Grouping -eq $Group) { [void]$watch.Add([string]$r.Name) } }

# A List, not `$rules = foreach ...`: @($null) would be one null entry when nothing matches.
$rules = New-Object 'System.Collections.Generic.List[object]'
foreach ($r in $all) {
    if ($r.Grouping -eq $Group -or $watch.Contains([string]$r.Name)) {
        $rules.Add([ordered]@{
            Name            = [string]$r.Name
            Grouping        = [string]$r.Grouping
            Description     = [string]$r.Description
            Direction       = [int]$r.Direction
            Action          = [int]$r.Action
            Enabled         = [bool]$r.Enabled
            Protocol        = [int]$r.Protocol
            LocalAddresses  = [string]$r.LocalAddresses
            LocalPorts      = [string]$r.LocalPorts
            RemoteAddresses = [string]$r.RemoteAddresses
            RemotePorts     = [string]$r.RemotePorts
            Profiles        = [int]$r.Profiles
            ApplicationName = [string]$r.ApplicationName
            ServiceName     = [string]$r.ServiceName
        })
    }
}

$Ansible.Result = @{
    group = $Group
    total = $all.Count
    rules = $rules.ToArray()
}
